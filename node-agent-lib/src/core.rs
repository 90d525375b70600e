//! The `CoreApi` port: what the agent needs from the core's gRPC API, with
//! its adapter over [`xray_core_client::CoreClient`].

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
pub use xray_core_client::{Account, CoreClient, CoreError, CoreUser, Flavor, ShadowsocksCipher};

use crate::service::ReadinessProbe;

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
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait CoreApi: Debug + Send + Sync {
    async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError>;
    async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError>;
    async fn users_count(&self, inbound_tag: &str) -> Result<Option<u64>, CoreError>;
    async fn uptime_secs(&self) -> Result<u32, CoreError>;
}

#[async_trait]
impl CoreApi for CoreClient {
    async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError> {
        CoreClient::add_user(self, inbound_tag, user).await
    }

    async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError> {
        CoreClient::remove_user(self, inbound_tag, email).await
    }

    async fn users_count(&self, inbound_tag: &str) -> Result<Option<u64>, CoreError> {
        if self.flavor() == Flavor::V2ray {
            return Ok(None);
        }
        match self.inbound_users_count(inbound_tag).await {
            Ok(n) => Ok(Some(n)),
            Err(CoreError::Unsupported(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn uptime_secs(&self) -> Result<u32, CoreError> {
        Ok(self.sys_stats().await?.uptime_secs)
    }
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
