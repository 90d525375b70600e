//! Scoped API tokens and the audit log: writes through the group-commit
//! writer, reads from the readers' pool.

use manager_lib::domain::{
    ApiToken, AuditEntry, AuditQuery, NewAuditEntry, Page, Timestamp, TokenId, TokenVerifier,
};
use manager_lib::storage::kit::access::{StoredToken, audit_page, audit_result};
use manager_lib::storage::{Entity, StorageError, StorageResult};
use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::SqliteStorage;
use crate::error::db_error;
use crate::rows::found;
use crate::writer::Args;

pub(crate) const TOKEN_COLUMNS: &str = "id, name, role, created, expires, revoked, salt, digest";
const AUDIT_COLUMNS: &str = "id, at, actor, call, target, result";

pub(crate) fn token_err(e: sqlx::Error) -> StorageError {
    db_error(e, Some(Entity::Token))
}

pub(crate) fn token_from_row(row: &SqliteRow) -> StorageResult<(ApiToken, TokenVerifier)> {
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

fn audit_from_row(row: &SqliteRow) -> StorageResult<AuditEntry> {
    let get = |e| db_error(e, None);
    let result: i64 = row.try_get("result").map_err(get)?;
    Ok(AuditEntry {
        id: row.try_get("id").map_err(get)?,
        at: Timestamp(row.try_get("at").map_err(get)?),
        actor: row.try_get("actor").map_err(get)?,
        call: row.try_get("call").map_err(get)?,
        target: row.try_get("target").map_err(get)?,
        result: audit_result(result)?,
    })
}

pub(crate) async fn create_token(
    s: &SqliteStorage,
    token: &ApiToken,
    verifier: &TokenVerifier,
) -> StorageResult<()> {
    let sql =
        format!("INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    let args = Args::default()
        .bind(token.id.to_string())
        .bind(token.name.clone())
        .bind(token.role.as_str())
        .bind(token.created.0)
        .bind(token.expires.map(|t| t.0))
        .bind(token.revoked.map(|t| t.0))
        .bind(verifier.salt().to_vec())
        .bind(verifier.digest_bytes().to_vec());
    s.writes
        .statement(sql, args, Some(Entity::Token), |_| Ok(()))
        .await
}

pub(crate) async fn get_token(
    s: &SqliteStorage,
    id: TokenId,
) -> StorageResult<(ApiToken, TokenVerifier)> {
    let row = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"
    ))
    .bind(id.to_string())
    .fetch_optional(&s.reader)
    .await
    .map_err(token_err)?;
    token_from_row(&found(row, Entity::Token)?)
}

pub(crate) async fn list_tokens(s: &SqliteStorage) -> StorageResult<Vec<ApiToken>> {
    let rows = sqlx::query(&format!(
        "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created, id"
    ))
    .fetch_all(&s.reader)
    .await
    .map_err(token_err)?;
    rows.iter()
        .map(|r| token_from_row(r).map(|(t, _)| t))
        .collect()
}

pub(crate) async fn revoke_token(
    s: &SqliteStorage,
    id: TokenId,
    now: Timestamp,
) -> StorageResult<ApiToken> {
    let sql = format!(
        "UPDATE api_tokens SET revoked = coalesce(revoked, ?2) WHERE id = ?1 RETURNING {TOKEN_COLUMNS}"
    );
    let args = Args::default().bind(id.to_string()).bind(now.0);
    s.writes
        .statement(sql, args, Some(Entity::Token), |row| {
            token_from_row(&found(row, Entity::Token)?).map(|(t, _)| t)
        })
        .await
}

pub(crate) async fn append_audit(
    s: &SqliteStorage,
    entry: &NewAuditEntry,
) -> StorageResult<AuditEntry> {
    let sql = format!(
        "INSERT INTO audit_log (at, actor, call, target, result) VALUES (?1, ?2, ?3, ?4, ?5) \
         RETURNING {AUDIT_COLUMNS}"
    );
    let args = Args::default()
        .bind(entry.at.0)
        .bind(entry.actor.clone())
        .bind(entry.call.clone())
        .bind(entry.target.clone())
        .bind(i64::from(entry.result));
    s.writes
        .statement(sql, args, None, |row| {
            let row = row.ok_or_else(|| StorageError::Corrupt("insert returned no row".into()))?;
            audit_from_row(&row)
        })
        .await
}

pub(crate) async fn list_audit(
    s: &SqliteStorage,
    q: &AuditQuery,
) -> StorageResult<Page<AuditEntry>> {
    let limit = q.clamped_limit();
    let rows = sqlx::query(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log \
         WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR call = ?2) \
           AND (?3 IS NULL OR target = ?3) AND (?4 IS NULL OR at >= ?4) \
           AND (?5 IS NULL OR at < ?5) AND (?6 IS NULL OR id < ?6) \
         ORDER BY id DESC LIMIT ?7"
    ))
    .bind(q.actor.as_deref())
    .bind(q.call.as_deref())
    .bind(q.target.as_deref())
    .bind(q.from.map(|t| t.0))
    .bind(q.to.map(|t| t.0))
    .bind(q.before)
    .bind(i64::from(limit) + 1)
    .fetch_all(&s.reader)
    .await
    .map_err(|e| db_error(e, None))?;
    let items = rows
        .iter()
        .map(audit_from_row)
        .collect::<StorageResult<Vec<_>>>()?;
    Ok(audit_page(items, limit))
}

pub(crate) async fn purge_audit(s: &SqliteStorage, before: Timestamp) -> StorageResult<u64> {
    s.write(move |conn| {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM audit_log WHERE at < ?1")
                .bind(before.0)
                .execute(&mut *conn)
                .await
                .map_err(|e| db_error(e, None))?;
            Ok(done.rows_affected())
        })
    })
    .await
}
