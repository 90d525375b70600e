//! Scoped API tokens and the audit log: tokens made, listed, revoked and
//! checked; what callers changed recorded, listed, and pruned past the
//! retention setting (`audit_days_kept`).

use super::{Manager, ManagerError, ManagerResult};
use crate::domain::{
    ApiToken, AuditEntry, AuditQuery, IssuedToken, NewAuditEntry, NewToken, Page, ParseError,
    PresentedToken, Timestamp, TokenId,
};
use crate::storage::StorageError;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Manager {
    /// Makes a token; its text is in the answer and nowhere else.
    /// [`ManagerError::InvalidToken`] for an expiry that is not in the
    /// future, [`ManagerError::TokenNameTaken`] for a name any token ever
    /// had.
    pub async fn create_token(&self, new: NewToken) -> ManagerResult<IssuedToken> {
        let now = Timestamp::now();
        if new.expires.is_some_and(|e| e <= now) {
            return Err(ManagerError::InvalidToken(ParseError {
                what: "token expiry",
                value: "not in the future".into(),
            }));
        }
        let issued = IssuedToken::issue(new, now);
        self.store_token(&issued.token, &issued.verifier).await?;
        Ok(issued)
    }

    /// Every token (revoked and expired ones too), oldest first.
    pub async fn list_tokens(&self) -> ManagerResult<Vec<ApiToken>> {
        Ok(self.storage.list_tokens().await?)
    }

    /// Revokes a token: refused from now on. Idempotent.
    pub async fn revoke_token(&self, id: TokenId) -> ManagerResult<ApiToken> {
        let now = Timestamp::now();
        self.store_revocation(id, now).await
    }

    /// The token `text` is, when it is one and may be used now; `None` when
    /// it is not a token's text, names no token, has the wrong secret, or
    /// its token expired or was revoked.
    pub async fn authenticate(&self, text: &str) -> ManagerResult<Option<ApiToken>> {
        let Some(presented) = PresentedToken::parse(text) else {
            return Ok(None);
        };
        match self.storage.get_token(presented.id()).await {
            Ok((token, verifier)) => {
                let ok = verifier.verifies(&presented) && token.is_usable(Timestamp::now());
                Ok(ok.then_some(token))
            }
            Err(StorageError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores an audit entry.
    pub async fn record_audit(&self, entry: &NewAuditEntry) -> ManagerResult<AuditEntry> {
        Ok(self.storage.append_audit(entry).await?)
    }

    /// Audit entries, newest first (see [`AuditQuery`]).
    pub async fn list_audit(&self, query: &AuditQuery) -> ManagerResult<Page<AuditEntry>> {
        Ok(self.storage.list_audit(query).await?)
    }

    /// Drops audit entries older than `audit_days_kept` days; returns how
    /// many went.
    pub async fn purge_audit(&self) -> ManagerResult<u64> {
        let days = i64::from(self.settings.audit_days_kept);
        let before = Timestamp(
            Timestamp::now()
                .0
                .saturating_sub(days.saturating_mul(DAY_MS)),
        );
        Ok(self.storage.purge_audit(before).await?)
    }
}
