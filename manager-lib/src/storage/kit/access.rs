//! Scoped tokens and audit entries as every backend stores them: a token's
//! columns turned into the domain's token and verifier, an audit entry's
//! stored status checked, and a page of audit entries cut.

use crate::domain::{ApiToken, AuditEntry, Page, Role, Timestamp, TokenId, TokenVerifier};
use crate::storage::{StorageError, StorageResult};

/// A token's row as read: what a backend takes from its columns.
#[derive(Debug)]
pub struct StoredToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
}

impl StoredToken {
    /// The token and its verifier; a column that does not parse is
    /// [`StorageError::Corrupt`].
    pub fn into_token(self) -> StorageResult<(ApiToken, TokenVerifier)> {
        let corrupt = |what: &str| StorageError::Corrupt(format!("stored token {what}"));
        let id: TokenId = self.id.parse().map_err(|_| corrupt("id"))?;
        let role: Role = self.role.parse().map_err(|_| corrupt("role"))?;
        let verifier =
            TokenVerifier::from_parts(&self.salt, &self.digest).ok_or_else(|| corrupt("digest"))?;
        let token = ApiToken {
            id,
            name: self.name,
            role,
            created: Timestamp(self.created),
            expires: self.expires.map(Timestamp),
            revoked: self.revoked.map(Timestamp),
        };
        Ok((token, verifier))
    }
}

/// An audit entry's stored HTTP status as the domain's.
pub fn audit_result(stored: i64) -> StorageResult<u16> {
    u16::try_from(stored).map_err(|_| StorageError::Corrupt(format!("audit result {stored}")))
}

/// The page of a listing that read up to `limit + 1` entries, newest
/// first: the next page starts before the last one kept.
pub fn audit_page(mut items: Vec<AuditEntry>, limit: u32) -> Page<AuditEntry> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = more
        .then(|| items.last().map(|e| e.id.to_string()))
        .flatten();
    Page { items, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> StoredToken {
        StoredToken {
            id: TokenId::random().to_string(),
            name: "ops".into(),
            role: "users".into(),
            created: 5,
            expires: Some(9),
            revoked: None,
            salt: vec![1; 16],
            digest: vec![2; 32],
        }
    }

    #[test]
    fn a_stored_token_reads_back_and_a_damaged_one_is_corrupt() {
        let (token, verifier) = stored().into_token().unwrap();
        assert_eq!(token.role, Role::Users);
        assert_eq!(token.expires, Some(Timestamp(9)));
        assert_eq!(verifier.salt(), &[1; 16]);
        for damage in [
            |s: &mut StoredToken| s.id = "nope".into(),
            |s: &mut StoredToken| s.role = "root".into(),
            |s: &mut StoredToken| s.digest.truncate(3),
        ] {
            let mut s = stored();
            damage(&mut s);
            assert!(matches!(s.into_token(), Err(StorageError::Corrupt(_))));
        }
        assert!(audit_result(70_000).is_err());
        assert_eq!(audit_result(403).unwrap(), 403);
    }
}
