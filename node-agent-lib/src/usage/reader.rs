//! [`TrafficReader`]: the port the usage collector reads the core's
//! traffic counters through, and its adapters.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use super::sums::{UserSums, user_id};
use crate::core::{CoreApi, CoreClient, CoreError};

/// What the usage collector reads from the core: its users' traffic.
///
/// # Contract
///
/// - `take_user_traffic_into` reads and zeroes the traffic counters of every
///   user whose email is a user id (a UUID as `Uuid::hyphenated` writes it)
///   and adds the bytes since the last take to `sums`, zeroes left out.
///   Counters of other emails (the operator's own clients) may be read and
///   zeroed too, or left in the core; they never reach `sums`.
/// - What it read is gone from the core, so on an error `sums` keeps what
///   was read before it (the caller must keep that too).
#[async_trait]
pub trait TrafficReader: Debug + Send + Sync {
    async fn take_user_traffic_into(&self, sums: &mut UserSums) -> Result<(), CoreError>;
}

/// One `QueryStats` call, its answer summed as it arrives
/// ([`CoreClient::query_stats_into`]): a read of 100,000 users holds one
/// HTTP/2 frame of it at a time, and `sums`. One call, not one per first
/// character of the id: V2Ray 4.34 scans every counter for each call's
/// pattern, so sixteen calls cost the core 3.4 times the CPU of one (1240
/// against 360 ms for 200,000 counters, `bench_query_stats` in
/// xray-core-client) and answered later on two cores.
#[async_trait]
impl TrafficReader for CoreClient {
    async fn take_user_traffic_into(&self, sums: &mut UserSums) -> Result<(), CoreError> {
        self.query_stats_into("user>>>", true, sums).await
    }
}

/// A [`TrafficReader`] over any [`CoreApi`]: its `take_user_traffic`, user
/// ids kept.
#[derive(Debug, Clone)]
pub struct CoreApiTraffic(pub Arc<dyn CoreApi>);

#[async_trait]
impl TrafficReader for CoreApiTraffic {
    async fn take_user_traffic_into(&self, sums: &mut UserSums) -> Result<(), CoreError> {
        for (email, up, down) in self.0.take_user_traffic().await? {
            if let Some(id) = user_id(&email) {
                sums.add(id, up, down);
            }
        }
        Ok(())
    }
}
