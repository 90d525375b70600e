//! The `CoreApi` port: what the agent needs from the core's API, and its
//! backends: [`CoreClient`] over Xray's and V2Ray's gRPC API (module
//! `xray`) and [`SsManagerClient`] over shadowsocks-libev's `ss-manager`
//! (module `ssmanager`, its users' ports in [`ports`]). `conformance`
//! (feature `conformance`) checks a backend against the contract.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod ports;
mod ssmanager;
mod xray;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
pub use xray_core_client::{
    Account, CoreClient, CoreError, CoreUser, Flavor, ShadowsocksCipher, Stat,
};

use crate::service::ReadinessProbe;
pub use ssmanager::{SS_MANAGER_TAG, SsManagerClient, method_of, parse_stat};
pub use xray::sum_user_traffic;
pub(crate) use xray::user_traffic_counter;

/// The running core's user management and health.
///
/// # Contract
///
/// - `add_user` fails with `CoreError::UserExists` when the inbound already
///   has a user with this email, and `remove_user` with
///   `CoreError::UserNotFound` when it has none: the port reports, the agent
///   decides that both count as success.
/// - `users_count` is `Ok(None)` when the core cannot count an inbound's
///   users (V2Ray 4.34).
/// - `uptime_secs` is the core's uptime in whole seconds (too coarse to tell
///   restarts apart: the service backend names each run for that). Any call
///   fails with `CoreError::Unavailable` when the API does not answer.
/// - `take_user_traffic` reads and zeroes every per-user traffic counter in
///   one step and answers `(email, uplink, downlink)` bytes since the last
///   take, one entry per email, zero entries left out. What it answered is
///   gone from the core: the caller must keep it. A core that counts both
///   directions as one number (`ss-manager`) answers it as downlink.
/// - A core without inbounds of its own (`ss-manager`: one port per user)
///   has one tag ([`SS_MANAGER_TAG`]); any other is `InboundNotFound`.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CoreApi: Debug + Send + Sync {
    async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError>;
    async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError>;
    async fn users_count(&self, inbound_tag: &str) -> Result<Option<u64>, CoreError>;
    async fn uptime_secs(&self) -> Result<u32, CoreError>;
    async fn take_user_traffic(&self) -> Result<Vec<(String, u64, u64)>, CoreError>;
}

/// A readiness probe that asks the core's API for its uptime.
#[derive(Debug, Clone)]
pub struct CoreApiProbe(pub Arc<dyn CoreApi>);

#[async_trait]
impl ReadinessProbe for CoreApiProbe {
    async fn ready(&self) -> bool {
        self.0.uptime_secs().await.is_ok()
    }
}
