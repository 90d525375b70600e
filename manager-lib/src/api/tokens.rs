//! Scoped API tokens and the audit log on the admin API: make, list and
//! revoke tokens (the token's text is in the creation's answer only), and
//! list audit entries with filters.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::responses::AdminErrors;
use super::state::ApiState;
use crate::domain::{ApiToken, AuditEntry, AuditQuery, NewToken, Role, Timestamp, TokenId};
use crate::manager::ManagerError;

type ApiResult<T> = Result<T, ApiError>;

fn secs(t: Timestamp) -> i64 {
    t.0.div_euclid(1000)
}

fn from_secs(s: i64) -> Timestamp {
    Timestamp(s.saturating_mul(1000))
}

/// A token as listed: never its text. Times in Unix seconds.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenView {
    #[serde(rename = "tokenID")]
    token_id: String,
    name: String,
    /// `read-only`, `users` or `admin`.
    #[schema(value_type = String)]
    role: Role,
    created: i64,
    expires: Option<i64>,
    revoked: Option<i64>,
}

impl From<ApiToken> for TokenView {
    fn from(t: ApiToken) -> Self {
        Self {
            token_id: t.id.to_string(),
            name: t.name,
            role: t.role,
            created: secs(t.created),
            expires: t.expires.map(secs),
            revoked: t.revoked.map(secs),
        }
    }
}

/// A token just made: its fields and its text, shown this once.
#[derive(Serialize, ToSchema)]
pub(super) struct TokenCreated {
    #[serde(flatten)]
    view: TokenView,
    /// `Authorization: Bearer <token>`. Not stored: it cannot be shown again.
    token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NewTokenBody {
    /// 1 to 64 letters, digits, `-`, `_`, `.` or `@`; unique among every
    /// token ever made; not `bootstrap`.
    name: String,
    /// `read-only`, `users` or `admin`.
    #[schema(value_type = String)]
    role: String,
    /// Unix seconds from which the token is refused; none: never expires.
    #[serde(alias = "expires_at", default)]
    expires_at: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct TokenIdBody {
    #[serde(rename = "tokenID", alias = "token_id", alias = "tokenId")]
    token_id: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct TokensAnswer {
    tokens: Vec<TokenView>,
}

#[utoipa::path(
    post,
    path = "/token/new",
    tag = "admin",
    summary = "Make a scoped API token (its text is in this answer only)",
    request_body = NewTokenBody,
    responses(
        (status = 200, body = TokenCreated),
        (status = 400, description = "`invalid token` (name, role or expiry), or a `bad request`", body = ErrorBody),
        (status = 409, description = "`token name taken`", body = ErrorBody),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn token_new(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<NewTokenBody>,
) -> ApiResult<Json<TokenCreated>> {
    let invalid = |e| ApiError::Manager(ManagerError::InvalidToken(e));
    let role: Role = body.role.parse().map_err(invalid)?;
    let new = NewToken::new(&body.name, role, body.expires_at.map(from_secs)).map_err(invalid)?;
    let issued = st.manager.create_token(new).await?;
    let token = issued.text();
    Ok(Json(TokenCreated {
        view: issued.token.into(),
        token,
    }))
}

#[utoipa::path(
    get,
    path = "/tokens",
    tag = "admin",
    summary = "Every scoped token (revoked and expired ones too), oldest first; never their texts",
    responses((status = 200, body = TokensAnswer), AdminErrors),
    security(("admin_token" = []))
)]
pub(super) async fn tokens(State(st): State<ApiState>) -> ApiResult<Json<TokensAnswer>> {
    let tokens = st.manager.list_tokens().await?;
    Ok(Json(TokensAnswer {
        tokens: tokens.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(
    post,
    path = "/token/revoke",
    tag = "admin",
    summary = "Revoke a token: refused from now on (idempotent)",
    request_body = TokenIdBody,
    responses(
        (status = 200, body = TokenView),
        (status = 400, description = "`token not exists`, or a `bad request`", body = ErrorBody),
        AdminErrors,
    ),
    security(("admin_token" = []))
)]
pub(super) async fn token_revoke(
    State(st): State<ApiState>,
    JsonBody(body): JsonBody<TokenIdBody>,
) -> ApiResult<Json<TokenView>> {
    let id: TokenId = body
        .token_id
        .parse()
        .map_err(|_| ApiError::Manager(ManagerError::TokenNotFound))?;
    Ok(Json(st.manager.revoke_token(id).await?.into()))
}

/// One audit entry; `at` in Unix seconds.
#[derive(Serialize, ToSchema)]
pub(super) struct AuditView {
    id: i64,
    at: i64,
    /// The token's name, or `bootstrap`.
    actor: String,
    /// `METHOD /route/template`, e.g. `POST /user/enable`.
    call: String,
    /// The id of the user, node or token the call was about, when known.
    target: Option<String>,
    /// The HTTP status answered.
    result: u16,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        Self {
            id: e.id,
            at: secs(e.at),
            actor: e.actor,
            call: e.call,
            target: e.target,
            result: e.result,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct AuditAnswer {
    entries: Vec<AuditView>,
    /// Pass as `before` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditParams {
    /// Only this actor's entries (a token's name, or `bootstrap`).
    actor: Option<String>,
    /// Only this call, e.g. `POST /user/enable`.
    call: Option<String>,
    /// Only entries about this id.
    target: Option<String>,
    /// Only entries at or after this Unix second.
    from: Option<i64>,
    /// Only entries before this Unix second.
    to: Option<i64>,
    /// Only entries older than this id (the previous page's `next`).
    before: Option<i64>,
    /// Entries in the answer (default 1000, at most 10000).
    limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/audit",
    tag = "admin",
    summary = "Audit entries, newest first, filtered and paged",
    params(AuditParams),
    responses(
        (status = 200, body = AuditAnswer),
        (status = 400, description = "`bad request`: a parameter in a bad form", body = ErrorBody),
        AdminErrors
    ),
    security(("admin_token" = []))
)]
pub(super) async fn audit(
    State(st): State<ApiState>,
    params: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditAnswer>> {
    let Query(p) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let query = AuditQuery {
        actor: p.actor,
        call: p.call,
        target: p.target,
        from: p.from.map(from_secs),
        to: p.to.map(from_secs),
        before: p.before,
        limit: p.limit.unwrap_or(super::DEFAULT_PAGE),
    };
    let page = st.manager.list_audit(&query).await?;
    Ok(Json(AuditAnswer {
        entries: page.items.into_iter().map(Into::into).collect(),
        next: page.next.and_then(|n| n.parse().ok()),
    }))
}
