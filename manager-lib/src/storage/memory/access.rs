//! The reference backend's tokens and audit log, on a state of their own
//! (no call touches both them and the fleet).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;

use super::MemoryStorage;
use crate::domain::{
    ApiToken, AuditEntry, AuditQuery, NewAuditEntry, Page, Timestamp, TokenId, TokenVerifier,
};
use crate::storage::{AccessStore, Entity, StorageError, StorageResult};

#[derive(Debug, Default)]
pub(super) struct AccessState {
    tokens: HashMap<TokenId, (ApiToken, TokenVerifier)>,
    audit: BTreeMap<i64, AuditEntry>,
    last_audit_id: i64,
}

impl AccessState {
    pub(super) fn create(
        &mut self,
        token: &ApiToken,
        verifier: &TokenVerifier,
    ) -> StorageResult<()> {
        let taken = self.tokens.contains_key(&token.id)
            || self.tokens.values().any(|(t, _)| t.name == token.name);
        if taken {
            return Err(StorageError::AlreadyExists(Entity::Token));
        }
        self.tokens
            .insert(token.id, (token.clone(), verifier.clone()));
        Ok(())
    }

    /// The token revoked, and whether this call revoked it.
    pub(super) fn revoke(
        &mut self,
        id: TokenId,
        now: Timestamp,
    ) -> StorageResult<(ApiToken, bool)> {
        let (token, _) = self
            .tokens
            .get_mut(&id)
            .ok_or(StorageError::NotFound(Entity::Token))?;
        let first = token.revoked.is_none();
        token.revoked.get_or_insert(now);
        Ok((token.clone(), first))
    }
}

impl MemoryStorage {
    pub(super) fn access(&self) -> std::sync::MutexGuard<'_, AccessState> {
        // Every method checks before it writes: a panic leaves no half-write.
        self.access.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl AccessStore for MemoryStorage {
    async fn create_token(&self, token: &ApiToken, verifier: &TokenVerifier) -> StorageResult<()> {
        self.access().create(token, verifier)
    }

    async fn get_token(&self, id: TokenId) -> StorageResult<(ApiToken, TokenVerifier)> {
        self.access()
            .tokens
            .get(&id)
            .cloned()
            .ok_or(StorageError::NotFound(Entity::Token))
    }

    async fn list_tokens(&self) -> StorageResult<Vec<ApiToken>> {
        let mut all: Vec<ApiToken> = self
            .access()
            .tokens
            .values()
            .map(|(t, _)| t.clone())
            .collect();
        all.sort_by_key(|t| (t.created, t.id));
        Ok(all)
    }

    async fn revoke_token(&self, id: TokenId, now: Timestamp) -> StorageResult<ApiToken> {
        Ok(self.access().revoke(id, now)?.0)
    }

    async fn append_audit(&self, entry: &NewAuditEntry) -> StorageResult<AuditEntry> {
        let mut st = self.access();
        st.last_audit_id += 1;
        let stored = AuditEntry {
            id: st.last_audit_id,
            at: entry.at,
            actor: entry.actor.clone(),
            call: entry.call.clone(),
            target: entry.target.clone(),
            result: entry.result,
        };
        st.audit.insert(stored.id, stored.clone());
        Ok(stored)
    }

    async fn list_audit(&self, query: &AuditQuery) -> StorageResult<Page<AuditEntry>> {
        let limit = query.clamped_limit() as usize;
        let st = self.access();
        let mut matching = st.audit.values().rev().filter(|e| query.matches(e));
        let items: Vec<AuditEntry> = matching.by_ref().take(limit).cloned().collect();
        let next = match (matching.next(), items.last()) {
            (Some(_), Some(last)) => Some(last.id.to_string()),
            _ => None,
        };
        Ok(Page { items, next })
    }

    async fn purge_audit(&self, before: Timestamp) -> StorageResult<u64> {
        let mut st = self.access();
        let n = st.audit.len();
        st.audit.retain(|_, e| e.at >= before);
        Ok((n - st.audit.len()) as u64)
    }
}
