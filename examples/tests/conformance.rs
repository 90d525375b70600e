//! The custom backend runs the same conformance suite as the real ones.

use std::sync::Arc;

use examples::CountingStorage;
use manager_lib::storage::Storage;
use manager_lib::storage::memory::MemoryStorage;

fn fresh() -> Arc<dyn Storage> {
    Arc::new(CountingStorage::new(Arc::new(MemoryStorage::new())))
}

manager_lib::storage_conformance_tests!(fresh());

#[tokio::test]
async fn calls_are_counted() {
    let storage = CountingStorage::new(Arc::new(MemoryStorage::new()));
    let user = storage
        .create_user(manager_lib::domain::NewUser::new("alice").unwrap())
        .await
        .unwrap();
    storage.get_user(user.id).await.unwrap();
    assert_eq!(storage.counts(), (1, 1));
}
