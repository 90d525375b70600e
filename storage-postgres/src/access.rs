//! Scoped API tokens and the audit log: single statements on the pool.

use manager_lib::domain::{
    ApiToken, AuditEntry, AuditQuery, NewAuditEntry, Page, Timestamp, TokenId, TokenVerifier,
};
use manager_lib::storage::kit::access::{StoredToken, audit_page, audit_result};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::PgStorage;
use crate::error::map_err;

const TOKEN_COLUMNS: &str = "id::text AS id, name, role, created, expires, revoked, salt, digest";
/// The same columns, of `api_tokens` named (beside another relation).
const TOKEN_COLUMNS_T: &str = "api_tokens.id::text AS id, api_tokens.name, api_tokens.role, \
     api_tokens.created, api_tokens.expires, api_tokens.revoked, api_tokens.salt, \
     api_tokens.digest";
const AUDIT_COLUMNS: &str = "id, at, actor, call, target, result";

fn token_err(e: sqlx::Error) -> StorageError {
    map_err(Entity::Token, e)
}

// Audit rows are no entity of their own: a missing one is never asked for.
fn audit_err(e: sqlx::Error) -> StorageError {
    map_err(Entity::Token, e)
}

fn token_from_row(row: &PgRow) -> StorageResult<(ApiToken, TokenVerifier)> {
    StoredToken {
        id: row.try_get("id").map_err(token_err)?,
        name: row.try_get("name").map_err(token_err)?,
        role: row.try_get("role").map_err(token_err)?,
        created: row.try_get("created").map_err(token_err)?,
        expires: row.try_get("expires").map_err(token_err)?,
        revoked: row.try_get("revoked").map_err(token_err)?,
        salt: row.try_get("salt").map_err(token_err)?,
        digest: row.try_get("digest").map_err(token_err)?,
    }
    .into_token()
}

fn audit_from_row(row: &PgRow) -> StorageResult<AuditEntry> {
    let result: i16 = row.try_get("result").map_err(audit_err)?;
    Ok(AuditEntry {
        id: row.try_get("id").map_err(audit_err)?,
        at: Timestamp(row.try_get("at").map_err(audit_err)?),
        actor: row.try_get("actor").map_err(audit_err)?,
        call: row.try_get("call").map_err(audit_err)?,
        target: row.try_get("target").map_err(audit_err)?,
        result: audit_result(result.into())?,
    })
}

pub(crate) async fn create_token<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    token: &ApiToken,
    verifier: &TokenVerifier,
) -> StorageResult<()> {
    sqlx::query(
        "INSERT INTO api_tokens (id, name, role, created, expires, revoked, salt, digest) \
         VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(token.id.to_string())
    .bind(&token.name)
    .bind(token.role.as_str())
    .bind(token.created.0)
    .bind(token.expires.map(|t| t.0))
    .bind(token.revoked.map(|t| t.0))
    .bind(verifier.salt().as_slice())
    .bind(verifier.digest_bytes().as_slice())
    .execute(exec)
    .await
    .map_err(token_err)?;
    Ok(())
}

pub(crate) async fn get_token(
    s: &PgStorage,
    id: TokenId,
) -> StorageResult<(ApiToken, TokenVerifier)> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1::uuid"
    ))
    .bind(id.to_string())
    .fetch_optional(&s.pool)
    .await
    .map_err(token_err)?
    .ok_or(StorageError::NotFound(Entity::Token))?;
    token_from_row(&row)
}

pub(crate) async fn list_tokens(s: &PgStorage) -> StorageResult<Vec<ApiToken>> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created, id"
    ))
    .fetch_all(&s.pool)
    .await
    .map_err(token_err)?;
    rows.iter()
        .map(|r| token_from_row(r).map(|(t, _)| t))
        .collect()
}

/// The token revoked, and whether this call revoked it (it was not
/// revoked before).
pub(crate) async fn revoke_token<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    id: TokenId,
    now: Timestamp,
) -> StorageResult<(ApiToken, bool)> {
    let row = sqlx::query(&format!(
        "WITH old AS (SELECT revoked FROM api_tokens WHERE id = $1::uuid FOR UPDATE) \
         UPDATE api_tokens SET revoked = coalesce(api_tokens.revoked, $2) FROM old \
         WHERE id = $1::uuid \
         RETURNING {TOKEN_COLUMNS_T}, old.revoked IS NULL AS first"
    ))
    .bind(id.to_string())
    .bind(now.0)
    .fetch_optional(exec)
    .await
    .map_err(token_err)?
    .ok_or(StorageError::NotFound(Entity::Token))?;
    let first: bool = row.try_get("first").map_err(token_err)?;
    token_from_row(&row).map(|(t, _)| (t, first))
}

pub(crate) async fn append_audit(
    s: &PgStorage,
    entry: &NewAuditEntry,
) -> StorageResult<AuditEntry> {
    let result = i16::try_from(entry.result)
        .map_err(|_| StorageError::Corrupt(format!("audit result {}", entry.result)))?;
    let row = sqlx::query(&format!(
        "INSERT INTO audit_log (at, actor, call, target, result) VALUES ($1, $2, $3, $4, $5) \
         RETURNING {AUDIT_COLUMNS}"
    ))
    .bind(entry.at.0)
    .bind(&entry.actor)
    .bind(&entry.call)
    .bind(entry.target.as_deref())
    .bind(result)
    .fetch_one(&s.pool)
    .await
    .map_err(audit_err)?;
    audit_from_row(&row)
}

pub(crate) async fn list_audit(s: &PgStorage, q: &AuditQuery) -> StorageResult<Page<AuditEntry>> {
    let limit = q.clamped_limit();
    let rows = sqlx::query(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log \
         WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR call = $2) \
           AND ($3::text IS NULL OR target = $3) AND ($4::bigint IS NULL OR at >= $4) \
           AND ($5::bigint IS NULL OR at < $5) AND ($6::bigint IS NULL OR id < $6) \
         ORDER BY id DESC LIMIT $7"
    ))
    .bind(q.actor.as_deref())
    .bind(q.call.as_deref())
    .bind(q.target.as_deref())
    .bind(q.from.map(|t| t.0))
    .bind(q.to.map(|t| t.0))
    .bind(q.before)
    .bind(i64::from(limit) + 1)
    .fetch_all(&s.pool)
    .await
    .map_err(audit_err)?;
    let items = rows
        .iter()
        .map(audit_from_row)
        .collect::<StorageResult<Vec<_>>>()?;
    Ok(audit_page(items, limit))
}

pub(crate) async fn purge_audit(s: &PgStorage, before: Timestamp) -> StorageResult<u64> {
    let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
        .bind(before.0)
        .execute(&s.pool)
        .await
        .map_err(audit_err)?;
    Ok(done.rows_affected())
}
