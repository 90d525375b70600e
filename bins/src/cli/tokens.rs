//! Scoped API tokens (`token create|list|revoke`) and the audit log
//! (`audit`): the token's text is printed once, by `token create`.

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::args::{AuditArgs, TokenCommand};
use super::client::Client;
use super::error::CliError;
use super::output::{table, when};
use super::plan::{range_query, time};

/// A token as the API lists it (times in Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenView {
    #[serde(rename = "tokenID")]
    pub token_id: String,
    pub name: String,
    pub role: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
}

/// The answer of `POST /token/new`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub view: TokenView,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokensAnswer {
    pub tokens: Vec<TokenView>,
}

/// One audit entry (`at` in Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditView {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub call: String,
    pub target: Option<String>,
    pub result: u16,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditAnswer {
    pub entries: Vec<AuditView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

impl Client {
    /// `POST /token/new`.
    pub async fn token_new(
        &self,
        name: &str,
        role: &str,
        expires_at: Option<Value>,
    ) -> Result<TokenCreated, CliError> {
        self.post(
            &["token", "new"],
            json!({ "name": name, "role": role, "expiresAt": expires_at }),
        )
        .await
    }

    /// `GET /tokens`.
    pub async fn tokens(&self) -> Result<TokensAnswer, CliError> {
        self.call(Method::GET, self.url(&["tokens"]), None, true)
            .await
    }

    /// `POST /token/revoke`.
    pub async fn token_revoke(&self, id: &str) -> Result<TokenView, CliError> {
        self.post(&["token", "revoke"], json!({ "tokenID": id }))
            .await
    }

    /// `GET /audit?<filters>`.
    pub async fn audit(&self, args: &AuditArgs, now: u64) -> Result<AuditAnswer, CliError> {
        let mut url = self.url(&["audit"]);
        let range = range_query(&args.range, now).map_err(CliError::Usage)?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in [
                ("actor", &args.actor),
                ("call", &args.call),
                ("target", &args.target),
            ] {
                if let Some(v) = v {
                    q.append_pair(k, v);
                }
            }
            q.append_pair("limit", &args.limit.to_string());
        }
        let query = match (url.query(), range.as_str()) {
            (Some(q), "") => q.to_owned(),
            (Some(q), r) => format!("{q}&{r}"),
            (None, r) => r.to_owned(),
        };
        url.set_query(Some(&query));
        self.call(Method::GET, url, None, true).await
    }
}

/// What one `token` command answered: the API's JSON and the text for people.
pub async fn run_token(
    client: &Client,
    cmd: TokenCommand,
    now: u64,
) -> Result<(Value, String), CliError> {
    Ok(match cmd {
        TokenCommand::Create {
            name,
            role,
            expires,
        } => {
            let expires_at = expires
                .map(|raw| time(&raw, now).map_err(|e| e.replacen("--expire", "--expires", 1)))
                .transpose()
                .map_err(CliError::Usage)?;
            let created = client.token_new(&name, &role, expires_at).await?;
            let human = format!(
                "token {} ({}, {}): {}\nkeep it now: it is not stored and cannot be shown again",
                created.view.name, created.view.role, created.view.token_id, created.token
            );
            (json(&created), human)
        }
        TokenCommand::List => {
            let answer = client.tokens().await?;
            let human = tokens_table(&answer.tokens, now);
            (json(&answer), human)
        }
        TokenCommand::Revoke { id } => {
            let token = client.token_revoke(&id).await?;
            let human = format!("token {} ({id}): revoked", token.name);
            (json(&token), human)
        }
    })
}

/// `audit`: the entries as the API answers them and as a table.
pub async fn run_audit(
    client: &Client,
    args: &AuditArgs,
    now: u64,
) -> Result<(Value, String), CliError> {
    let answer = client.audit(args, now).await?;
    Ok((json(&answer), audit_table(&answer.entries)))
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn tokens_table(tokens: &[TokenView], now: u64) -> String {
    if tokens.is_empty() {
        return "no tokens".to_owned();
    }
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    let mut t = table(&["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "STATE"]);
    for k in tokens {
        let state = match (k.revoked, k.expires) {
            (Some(at), _) => format!("revoked {}", when(at)),
            (None, Some(at)) if at <= now => "expired".to_owned(),
            _ => "active".to_owned(),
        };
        t.add_row(vec![
            k.token_id.clone(),
            k.name.clone(),
            k.role.clone(),
            when(k.created),
            k.expires.map_or_else(|| "never".to_owned(), when),
            state,
        ]);
    }
    t.to_string()
}

fn audit_table(entries: &[AuditView]) -> String {
    if entries.is_empty() {
        return "no entries".to_owned();
    }
    let mut t = table(&["AT", "ACTOR", "CALL", "TARGET", "RESULT"]);
    for e in entries {
        t.add_row(vec![
            when(e.at),
            e.actor.clone(),
            e.call.clone(),
            e.target.clone().unwrap_or_default(),
            e.result.to_string(),
        ]);
    }
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_table_shows_state_and_never_a_text() {
        let view = |name: &str, expires, revoked| TokenView {
            token_id: format!("id-{name}"),
            name: name.into(),
            role: "users".into(),
            created: 1_800_000_000,
            expires,
            revoked,
        };
        let text = tokens_table(
            &[
                view("live", None, None),
                view("old", Some(1_800_000_100), None),
                view("gone", None, Some(1_800_000_050)),
            ],
            1_800_000_200,
        );
        assert!(
            text.contains("active") && text.contains("expired"),
            "{text}"
        );
        assert!(text.contains("revoked 2027-01-15"), "{text}");
        assert_eq!(tokens_table(&[], 0), "no tokens");
    }
}
