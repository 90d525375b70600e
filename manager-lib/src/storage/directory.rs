//! The part of the `Storage` port that answers the user directory (the
//! dashboard's user table): search, filters, order and keyset paging over
//! every live user. Every backend implements it next to
//! [`Storage`](super::Storage), which requires it; the SQL backends build
//! their query with [`kit::directory`](super::kit::directory).

use std::fmt::Debug;

use async_trait::async_trait;

use super::StorageResult;
use crate::domain::{Page, StateCounts, User, UserQuery};

/// The user directory. Object safe.
#[async_trait]
pub trait UserDirectory: Debug + Send + Sync {
    /// The live users `query` matches ([`UserQuery::matches`]), in
    /// `query.sort` order (descending when asked), ties by id in the same
    /// direction, after `query.after`, at most `query.clamped_limit()`.
    ///
    /// # Contract
    /// - `next` is `Some` exactly when more match; passed as `after` with
    ///   the same query, it gives the next page. Walking the pages visits
    ///   every matching user once, in order.
    /// - Deleted users are never listed.
    /// - A malformed `after` (not a cursor of this query's order) is
    ///   [`StorageError::Invalid`](super::StorageError::Invalid); nothing
    ///   is read.
    /// - Cost: an index range per page, whatever the page's position (no
    ///   offset); a backend keeps the indexes this needs.
    async fn find_users(&self, query: &UserQuery) -> StorageResult<Page<User>>;

    /// How many live users are in each state ([`User::state`]).
    ///
    /// # Contract
    /// - Every live user counts once, in its state as [`find_users`]'s
    ///   state filter sees it; deleted users never count.
    /// - Cost: independent of the number of users (the SQL backends keep
    ///   counters in the statement that changes a user's state).
    ///
    /// [`find_users`]: UserDirectory::find_users
    async fn count_users_by_state(&self) -> StorageResult<StateCounts>;
}

/// Implements [`UserDirectory`] for `$ty` by forwarding to its field
/// `$inner`: for decorators and test fakes (`clippy::missing_trait_methods`
/// denied, as for every forwarding impl).
#[macro_export]
macro_rules! forward_user_directory {
    ($ty:ty, $inner:ident) => {
        #[$crate::storage::access::__async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl $crate::storage::UserDirectory for $ty {
            async fn find_users(
                &self,
                query: &$crate::domain::UserQuery,
            ) -> $crate::storage::StorageResult<$crate::domain::Page<$crate::domain::User>> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::UserDirectory as _;
                self.$inner.find_users(query).await
            }
            async fn count_users_by_state(
                &self,
            ) -> $crate::storage::StorageResult<$crate::domain::StateCounts> {
                #[allow(unused_imports)] // a trait object finds it without
                use $crate::storage::UserDirectory as _;
                self.$inner.count_users_by_state().await
            }
        }
    };
}
