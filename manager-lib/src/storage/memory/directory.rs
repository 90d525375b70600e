//! The reference backend's user directory: every live user filtered and
//! sorted by the kit's rules (a scan: the reference shows what is right,
//! the SQL backends how to make it fast).

use async_trait::async_trait;

use super::MemoryStorage;
use crate::domain::{Page, StateCounts, User, UserQuery};
use crate::storage::{StorageResult, UserDirectory, kit};

#[async_trait]
impl UserDirectory for MemoryStorage {
    async fn find_users(&self, query: &UserQuery) -> StorageResult<Page<User>> {
        let st = self.lock();
        let live = st
            .users
            .values()
            .filter(|(_, deleted)| !deleted)
            .map(|(u, _)| u);
        kit::directory::find_in(query, live)
    }

    async fn count_users_by_state(&self) -> StorageResult<StateCounts> {
        let st = self.lock();
        let mut counts = StateCounts::default();
        for (user, _) in st.users.values().filter(|(_, deleted)| !deleted) {
            *counts.of_mut(user.state()) += 1;
        }
        Ok(counts)
    }
}
