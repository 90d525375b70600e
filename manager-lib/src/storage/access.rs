//! The part of the `Storage` port that keeps scoped API tokens and the
//! audit log (see [`crate::domain::token`] and [`crate::domain::audit`]).
//! Every backend implements it next to [`Storage`](super::Storage), which
//! requires it.

use std::fmt::Debug;

use async_trait::async_trait;

use super::StorageResult;
use crate::domain::{
    ApiToken, AuditEntry, AuditQuery, NewAuditEntry, Page, Timestamp, TokenId, TokenVerifier,
};
// For the docs' links only.
#[cfg(doc)]
use super::{Entity, StorageError};

/// Tokens and audit entries. Object safe; every method is one transaction.
#[async_trait]
pub trait AccessStore: Debug + Send + Sync {
    /// Stores a new token with its verifier (never its text).
    ///
    /// # Contract
    /// - [`StorageError::AlreadyExists`] ([`Entity::Token`]) when the id or
    ///   the name is taken, by any token ever stored (revoked ones too);
    ///   nothing is written then.
    async fn create_token(&self, token: &ApiToken, verifier: &TokenVerifier) -> StorageResult<()>;

    /// The token and its verifier, by id: one point read.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] ([`Entity::Token`]) when there is no such
    ///   token; revoked and expired tokens are found (the caller decides).
    async fn get_token(&self, id: TokenId) -> StorageResult<(ApiToken, TokenVerifier)>;

    /// Every token, revoked and expired ones included, oldest first (by
    /// `created`, then id).
    async fn list_tokens(&self) -> StorageResult<Vec<ApiToken>>;

    /// Marks the token revoked at `now` and returns it.
    ///
    /// # Contract
    /// - [`StorageError::NotFound`] ([`Entity::Token`]) when there is no such
    ///   token.
    /// - Idempotent: a token already revoked keeps its first `revoked` time.
    async fn revoke_token(&self, id: TokenId, now: Timestamp) -> StorageResult<ApiToken>;

    /// Stores an audit entry and returns it with its id.
    ///
    /// # Contract
    /// - Ids grow: an entry stored after another has a larger id.
    async fn append_audit(&self, entry: &NewAuditEntry) -> StorageResult<AuditEntry>;

    /// The entries `query` matches ([`AuditQuery::matches`]), newest (largest
    /// id) first, at most `query.clamped_limit()`.
    ///
    /// # Contract
    /// - `next` is `Some(id of the last entry)` exactly when more match;
    ///   passed as `before`, it gives the next page. Walking the pages
    ///   visits every matching entry once.
    async fn list_audit(&self, query: &AuditQuery) -> StorageResult<Page<AuditEntry>>;

    /// Deletes the entries whose `at` is before `before`; returns how many.
    async fn purge_audit(&self, before: Timestamp) -> StorageResult<u64>;
}

#[doc(hidden)]
pub use async_trait::async_trait as __async_trait;

/// Implements [`AccessStore`] for `$ty` by forwarding every method to its
/// field `$inner` (anything that derefs to an `AccessStore`): for
/// decorators and test fakes that change nothing about tokens and audit.
/// Every method is forwarded (`clippy::missing_trait_methods` is denied).
///
/// ```ignore
/// manager_lib::forward_access_store!(MyDecorator, inner);
/// ```
#[macro_export]
macro_rules! forward_access_store {
    ($ty:ty, $inner:ident) => {
        #[$crate::storage::access::__async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::storage::AccessStore for $ty {
            async fn create_token(
                &self,
                token: &$crate::domain::ApiToken,
                verifier: &$crate::domain::TokenVerifier,
            ) -> $crate::storage::StorageResult<()> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::AccessStore as _;
                self.$inner.create_token(token, verifier).await
            }
            async fn get_token(
                &self,
                id: $crate::domain::TokenId,
            ) -> $crate::storage::StorageResult<(
                $crate::domain::ApiToken,
                $crate::domain::TokenVerifier,
            )> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::AccessStore as _;
                self.$inner.get_token(id).await
            }
            async fn list_tokens(
                &self,
            ) -> $crate::storage::StorageResult<::std::vec::Vec<$crate::domain::ApiToken>> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::AccessStore as _;
                self.$inner.list_tokens().await
            }
            async fn revoke_token(
                &self,
                id: $crate::domain::TokenId,
                now: $crate::domain::Timestamp,
            ) -> $crate::storage::StorageResult<$crate::domain::ApiToken> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::AccessStore as _;
                self.$inner.revoke_token(id, now).await
            }
            async fn append_audit(
                &self,
                entry: &$crate::domain::NewAuditEntry,
            ) -> $crate::storage::StorageResult<$crate::domain::AuditEntry> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::AccessStore as _;
                self.$inner.append_audit(entry).await
            }
            async fn list_audit(
                &self,
                query: &$crate::domain::AuditQuery,
            ) -> $crate::storage::StorageResult<$crate::domain::Page<$crate::domain::AuditEntry>>
            {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::AccessStore as _;
                self.$inner.list_audit(query).await
            }
            async fn purge_audit(
                &self,
                before: $crate::domain::Timestamp,
            ) -> $crate::storage::StorageResult<u64> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::AccessStore as _;
                self.$inner.purge_audit(before).await
            }
        }
    };
}
