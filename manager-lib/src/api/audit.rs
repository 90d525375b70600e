//! Authorization and the audit trail of admin calls, run after the token
//! check: the caller's role against the route's ([`super::roles`]), 403 in
//! the error shape when it falls short; then, for every call that is not a
//! read, one audit entry once the call has answered (403s included).
//!
//! The target is the first id found in the request's JSON body (under
//! `userID`, `nodeID`, `tokenID` or their spellings), else in a successful
//! answer's (a created node or token; a created user's `user.id`). Only a value that parses as a
//! UUID is kept: no body, and so no key, token or subscription URL, is
//! ever copied into the log.

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::roles::required_role;
use crate::domain::{NewAuditEntry, NewToken, Role, Timestamp};
use crate::manager::Manager;

/// The fields a target id is read from, in this order.
const ID_FIELDS: &[&str] = &[
    "userID", "user_id", "userId", "nodeID", "node_id", "nodeId", "tokenID", "token_id", "tokenId",
];

/// Who is calling: the actor written in the audit log, and their role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    pub(crate) actor: String,
    pub(crate) role: Role,
}

impl Caller {
    /// The bootstrap admin token's holder.
    pub(crate) fn bootstrap() -> Self {
        Self {
            actor: NewToken::BOOTSTRAP_NAME.to_owned(),
            role: Role::Admin,
        }
    }
}

/// The first id field of a JSON object, when it holds a UUID; else the
/// `id` of an object one level down (an answer's `{"user": {"id": …}}`).
fn target_in(json: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let object = value.as_object()?;
    let uuid_at = |o: &serde_json::Map<String, serde_json::Value>, field: &str| {
        let id = uuid::Uuid::try_parse(o.get(field)?.as_str()?).ok()?;
        Some(id.hyphenated().to_string())
    };
    ID_FIELDS
        .iter()
        .find_map(|field| uuid_at(object, field))
        .or_else(|| {
            object
                .values()
                .filter_map(|v| v.as_object())
                .find_map(|inner| uuid_at(inner, "id"))
        })
}

/// Stores one audit entry: `caller` made `call` on `target`, answered
/// `status`; a storage failure is logged, never the caller's problem.
pub(crate) async fn record(
    manager: &Manager,
    caller: &Caller,
    call: String,
    target: Option<String>,
    status: StatusCode,
) {
    let entry = NewAuditEntry {
        at: Timestamp::now(),
        actor: caller.actor.clone(),
        call,
        target,
        result: status.as_u16(),
    };
    if let Err(e) = manager.record_audit(&entry).await {
        tracing::error!(error = %e, call = %entry.call, actor = %entry.actor, "audit entry not stored");
    }
}

/// Checks `caller`'s role for the call, runs it, and records it when it
/// is a change.
pub(crate) async fn authorize_and_run(
    manager: &Manager,
    caller: Caller,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "?".to_owned(), |p| p.as_str().to_owned());
    let needed = required_role(method.as_str(), &route);
    let change = !matches!(method, Method::GET | Method::HEAD);
    let call = format!("{method} {route}");
    if !caller.role.allows(needed) {
        let answer = ApiError::Forbidden(needed).into_response();
        if change {
            // What the caller tried to touch, when the body says it.
            let body = to_bytes(req.into_body(), super::MAX_BODY_BYTES).await;
            let target = body.ok().and_then(|b| target_in(&b));
            record(manager, &caller, call, target, answer.status()).await;
        }
        return answer;
    }
    if !change {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, super::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let answer = ApiError::BadRequest(e.to_string()).into_response();
            record(manager, &caller, call, None, answer.status()).await;
            return answer;
        }
    };
    let mut target = target_in(&bytes);
    let answer = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let answer = if target.is_none() && answer.status().is_success() {
        let (parts, body) = answer.into_parts();
        // The answers of admin changes are small JSON objects.
        match to_bytes(body, usize::MAX).await {
            Ok(bytes) => {
                target = target_in(&bytes);
                Response::from_parts(parts, Body::from(bytes))
            }
            Err(e) => {
                tracing::error!(error = %e, call, "answer body could not be read");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    } else {
        answer
    };
    record(manager, &caller, call, target, answer.status()).await;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_uuids_in_id_fields_become_targets() {
        let id = "6f1c7f3e-9a59-4c1a-9d8e-4f0c2b7a1d22";
        let body = format!(r#"{{"userName":"{id}","nodeID":"{id}"}}"#);
        assert_eq!(target_in(body.as_bytes()).as_deref(), Some(id));
        let nested = format!(r#"{{"user":{{"id":"{id}","name":"x"}}}}"#);
        assert_eq!(target_in(nested.as_bytes()).as_deref(), Some(id));
        let upper = format!(r#"{{"userID":"{}"}}"#, id.to_uppercase());
        assert_eq!(target_in(upper.as_bytes()).as_deref(), Some(id));
        for no in [
            r#"{"nodeKey":"c2VjcmV0"}"#.to_owned(),
            r#"{"token":"xmt_0123"}"#.to_owned(),
            r#"{"userID":"not-an-id"}"#.to_owned(),
            format!(r#"{{"name":"{id}"}}"#),
            format!(r#"["{id}"]"#),
            "not json".to_owned(),
        ] {
            assert_eq!(target_in(no.as_bytes()), None, "{no}");
        }
    }
}
