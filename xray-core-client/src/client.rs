//! The gRPC client. Calls go through `tonic::client::Grpc` with a method path
//! built from the flavor, because the generated clients hard-code one package.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

use crate::error::CoreError;
use crate::flavor::Flavor;
use crate::proto;
use crate::stat_stream::{self, CallError, StatSink};
use crate::stats::{Direction, Stat, SysStats, user_traffic_stat_name};
use crate::user::{CoreUser, typed};

const HANDLER: &str = "app.proxyman.command.HandlerService";
const STATS: &str = "app.stats.command.StatsService";

/// The largest answer accepted from the core. tonic's default (4 MiB) is too
/// small for a node's traffic counters: a `QueryStats` of 100,000 users
/// (two counters each) is about 15 MiB (measured by
/// `query_stats_of_100k_users_fits_the_decoding_limit`). The core is local
/// and trusted; this only keeps a broken one from exhausting memory.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// A cheap-to-clone handle on one core's API (clones share the connection).
///
/// # Contract
/// - Every call either completes within the configured timeout or fails with
///   [`CoreError::Unavailable`].
/// - Calls not offered by the flavor fail with [`CoreError::Unsupported`]
///   without reaching the core.
/// - `add_user` is not idempotent: a second add of the same email fails with
///   [`CoreError::UserExists`]; `remove_user` of an absent email fails with
///   [`CoreError::UserNotFound`]. Callers reconciling state treat those two
///   as "already done".
#[derive(Clone)]
pub struct CoreClient {
    channel: Channel,
    addr: String,
    flavor: Flavor,
    timeout: Duration,
    /// Prefix of `TypedMessage.type` names; the flavor's, except in tests that
    /// check how the core rejects a mismatch.
    type_prefix: &'static str,
}

impl fmt::Debug for CoreClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoreClient")
            .field("addr", &self.addr)
            .field("flavor", &self.flavor)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl CoreClient {
    /// A lazy connection to the core's API at `addr` (`127.0.0.1:10085` or
    /// `http://127.0.0.1:10085`). Nothing is dialled here, so this succeeds
    /// while the core is down; the first call reports it. `timeout` bounds
    /// every call, connecting included.
    ///
    /// Must be called within a Tokio runtime (the connection is driven by a
    /// background task); outside one it returns [`CoreError::Other`].
    pub fn new(addr: &str, flavor: Flavor, timeout: Duration) -> Result<Self, CoreError> {
        let uri = if addr.contains("://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(uri)
            .map_err(|e| CoreError::Other(format!("invalid core address {addr:?}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(CoreError::Other(
                "CoreClient::new must be called within a Tokio runtime".into(),
            ));
        }
        Ok(CoreClient {
            channel: endpoint.connect_lazy(),
            addr: addr.to_owned(),
            flavor,
            timeout,
            type_prefix: flavor.package_prefix(),
        })
    }

    /// The flavor this client speaks.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// A copy of this client that names `TypedMessage` types with `prefix`
    /// instead of the flavor's package prefix, to test how a core rejects a
    /// client configured with the wrong flavor.
    #[cfg(feature = "testing")]
    pub fn with_type_prefix(&self, prefix: &'static str) -> Self {
        CoreClient {
            type_prefix: prefix,
            ..self.clone()
        }
    }

    /// Adds `user` to the inbound tagged `inbound_tag`.
    pub async fn add_user(&self, inbound_tag: &str, user: &CoreUser) -> Result<(), CoreError> {
        let user = user.to_proto(self.flavor, self.type_prefix)?;
        let operation = typed(
            self.type_prefix,
            "app.proxyman.command.AddUserOperation",
            &proto::AddUserOperation { user: Some(user) },
        );
        self.alter_inbound(inbound_tag, operation).await
    }

    /// Removes the user keyed by `email` from the inbound tagged `inbound_tag`.
    pub async fn remove_user(&self, inbound_tag: &str, email: &str) -> Result<(), CoreError> {
        let operation = typed(
            self.type_prefix,
            "app.proxyman.command.RemoveUserOperation",
            &proto::RemoveUserOperation {
                email: email.to_owned(),
            },
        );
        self.alter_inbound(inbound_tag, operation).await
    }

    async fn alter_inbound(
        &self,
        tag: &str,
        operation: proto::TypedMessage,
    ) -> Result<(), CoreError> {
        let request = proto::AlterInboundRequest {
            tag: tag.to_owned(),
            operation: Some(operation),
        };
        let _: proto::AlterInboundResponse = self.unary(HANDLER, "AlterInbound", request).await?;
        Ok(())
    }

    /// Every user of the inbound tagged `tag` (Xray only).
    pub async fn inbound_users(&self, tag: &str) -> Result<Vec<CoreUser>, CoreError> {
        self.require_xray("GetInboundUsers is an Xray-only call")?;
        let response: proto::GetInboundUserResponse = self
            .unary(
                HANDLER,
                "GetInboundUsers",
                proto::GetInboundUserRequest {
                    tag: tag.to_owned(),
                    email: String::new(),
                },
            )
            .await?;
        response
            .users
            .into_iter()
            .map(CoreUser::from_proto)
            .collect()
    }

    /// How many users the inbound tagged `tag` holds (Xray only).
    pub async fn inbound_users_count(&self, tag: &str) -> Result<u64, CoreError> {
        self.require_xray("GetInboundUsersCount is an Xray-only call")?;
        let response: proto::GetInboundUsersCountResponse = self
            .unary(
                HANDLER,
                "GetInboundUsersCount",
                proto::GetInboundUserRequest {
                    tag: tag.to_owned(),
                    email: String::new(),
                },
            )
            .await?;
        u64::try_from(response.count)
            .map_err(|_| CoreError::Other(format!("negative user count {}", response.count)))
    }

    /// The tags of all inbounds (Xray only).
    pub async fn list_inbounds(&self) -> Result<Vec<String>, CoreError> {
        self.require_xray("ListInbounds is an Xray-only call")?;
        let response: proto::ListInboundsResponse = self
            .unary(
                HANDLER,
                "ListInbounds",
                proto::ListInboundsRequest { is_only_tags: true },
            )
            .await?;
        Ok(response.inbounds.into_iter().map(|i| i.tag).collect())
    }

    /// The counter `name`; `reset` zeroes it after reading. A counter that
    /// does not exist (yet) is [`CoreError::StatNotFound`].
    pub async fn get_stat(&self, name: &str, reset: bool) -> Result<i64, CoreError> {
        let response: proto::GetStatsResponse = self
            .unary(
                STATS,
                "GetStats",
                proto::GetStatsRequest {
                    name: name.to_owned(),
                    reset,
                },
            )
            .await?;
        Ok(response.stat.map_or(0, |s| s.value))
    }

    /// All counters whose name contains `pattern` (plain substring; empty
    /// matches all); `reset` zeroes them after reading.
    pub async fn query_stats(&self, pattern: &str, reset: bool) -> Result<Vec<Stat>, CoreError> {
        let mut stats = Vec::new();
        self.query_stats_into(pattern, reset, &mut stats).await?;
        Ok(stats)
    }

    /// As [`Self::query_stats`], each counter handed to `sink` as the
    /// answer arrives: neither the answer nor a `String` per counter is
    /// ever held whole. On an error, what `sink` took stays there (with
    /// `reset`, the core zeroed it: the caller keeps it).
    pub async fn query_stats_into(
        &self,
        pattern: &str,
        reset: bool,
        sink: &mut (impl StatSink + ?Sized),
    ) -> Result<(), CoreError> {
        let path = PathAndQuery::try_from(self.flavor.method_path(STATS, "QueryStats"))
            .map_err(|e| CoreError::Other(format!("invalid method path: {e}")))?;
        let request = proto::QueryStatsRequest {
            pattern: pattern.to_owned(),
            reset,
        };
        let call = stat_stream::query_stats(
            self.channel.clone(),
            path,
            &request,
            self.timeout,
            MAX_MESSAGE_BYTES,
            sink,
        );
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(CallError::Transport(why))) => {
                Err(CoreError::Unavailable(format!("{}: {why}", self.addr)))
            }
            Ok(Err(CallError::Status(status))) => Err(self.status_error(status)),
            Err(_) => Err(CoreError::Unavailable(format!(
                "{}: no answer within {:?}",
                self.addr, self.timeout
            ))),
        }
    }

    /// The core's runtime figures, including its uptime.
    pub async fn sys_stats(&self) -> Result<SysStats, CoreError> {
        let r: proto::SysStatsResponse = self
            .unary(STATS, "GetSysStats", proto::SysStatsRequest {})
            .await?;
        Ok(SysStats {
            uptime_secs: r.uptime,
            num_goroutine: r.num_goroutine,
            num_gc: r.num_gc,
            alloc: r.alloc,
            total_alloc: r.total_alloc,
            sys: r.sys,
            mallocs: r.mallocs,
            frees: r.frees,
            live_objects: r.live_objects,
            pause_total_ns: r.pause_total_ns,
        })
    }

    /// Emails of the users with a live connection (Xray only; needs
    /// `statsUserOnline` in the user's policy level).
    pub async fn online_users(&self) -> Result<Vec<String>, CoreError> {
        self.require_xray("GetAllOnlineUsers is an Xray-only call")?;
        let response: proto::GetAllOnlineUsersResponse = self
            .unary(
                STATS,
                "GetAllOnlineUsers",
                proto::GetAllOnlineUsersRequest {},
            )
            .await?;
        Ok(response
            .users
            .into_iter()
            .map(|name| online_map_email(&name).map_or(name.clone(), str::to_owned))
            .collect())
    }

    /// The source IPs of `email`'s live connections, each with the unix time
    /// it was last seen (Xray only). A user who was never online has none.
    pub async fn online_ips(&self, email: &str) -> Result<HashMap<String, i64>, CoreError> {
        self.require_xray("GetStatsOnlineIpList is an Xray-only call")?;
        let request = proto::GetStatsRequest {
            name: format!("user>>>{email}>>>online"),
            reset: false,
        };
        match self
            .unary::<_, proto::GetStatsOnlineIpListResponse>(STATS, "GetStatsOnlineIpList", request)
            .await
        {
            Ok(response) => Ok(response.ips),
            // The core creates a user's online map at their first connection.
            Err(CoreError::StatNotFound { .. }) => Ok(HashMap::new()),
            Err(e) => Err(e),
        }
    }

    /// The traffic of one user as (uplink, downlink) bytes; zero for a user
    /// who never connected. `reset` zeroes both counters after reading.
    pub async fn user_traffic(&self, email: &str, reset: bool) -> Result<(i64, i64), CoreError> {
        let up_name = user_traffic_stat_name(email, Direction::Uplink);
        let down_name = user_traffic_stat_name(email, Direction::Downlink);
        // The trailing `>>>` keeps `user>>>a>>>…` from matching user `ab`'s
        // counters; exact names are checked below anyway.
        let stats = self
            .query_stats(&format!("user>>>{email}>>>traffic>>>"), reset)
            .await?;
        let value_of = |name: &str| {
            stats
                .iter()
                .filter(|s| s.name == name)
                .map(|s| s.value)
                .sum::<i64>()
        };
        Ok((value_of(&up_name), value_of(&down_name)))
    }

    /// The error of a call the core answered with `status`.
    fn status_error(&self, status: tonic::Status) -> CoreError {
        match CoreError::from(status) {
            CoreError::Unavailable(why) => CoreError::Unavailable(format!("{}: {why}", self.addr)),
            other => other,
        }
    }

    fn require_xray(&self, what: &'static str) -> Result<(), CoreError> {
        match self.flavor {
            Flavor::Xray => Ok(()),
            Flavor::V2ray => Err(CoreError::Unsupported(what)),
        }
    }

    async fn unary<Req, Resp>(
        &self,
        service: &str,
        method: &str,
        request: Req,
    ) -> Result<Resp, CoreError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let path = PathAndQuery::try_from(self.flavor.method_path(service, method))
            .map_err(|e| CoreError::Other(format!("invalid method path: {e}")))?;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let call = async move {
            grpc.ready()
                .await
                .map_err(|e| CoreError::Unavailable(format!("{}: {e}", self.addr)))?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            let mut request = tonic::Request::new(request);
            request.set_timeout(self.timeout);
            grpc.unary(request, path, codec)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| self.status_error(status))
        };
        // The endpoint's own timeouts do not cover waiting for the channel to
        // become ready, so bound the whole call here.
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(CoreError::Unavailable(format!(
                "{}: no answer within {:?}",
                self.addr, self.timeout
            ))),
        }
    }
}

/// `EMAIL` from an online-map name `user>>>EMAIL>>>online`.
fn online_map_email(name: &str) -> Option<&str> {
    name.strip_prefix("user>>>")?.strip_suffix(">>>online")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_stats_of_100k_users_fits_the_decoding_limit() {
        use prost::Message as _;
        let stat = |i: usize, dir: &str| proto::Stat {
            name: format!("user>>>{}>>>traffic>>>{dir}", uuid_like(i)),
            // The widest value: the varint of a large counter.
            value: i64::MAX,
        };
        let response = proto::QueryStatsResponse {
            stat: (0..100_000)
                .flat_map(|i| [stat(i, "uplink"), stat(i, "downlink")])
                .collect(),
        };
        let bytes = response.encoded_len();
        eprintln!("QueryStats answer for 100,000 users: {bytes} bytes");
        assert!(bytes > 4 * 1024 * 1024, "tonic's default would refuse it");
        assert!(
            bytes * 3 < MAX_MESSAGE_BYTES,
            "{bytes} leaves too little room"
        );
    }

    fn uuid_like(i: usize) -> String {
        format!("{i:08x}-0000-4000-8000-{i:012x}")
    }

    #[test]
    fn online_map_names_reduce_to_emails() {
        assert_eq!(online_map_email("user>>>u1@x>>>online"), Some("u1@x"));
        assert_eq!(online_map_email("u1@x"), None);
    }

    #[tokio::test]
    async fn new_accepts_host_port_and_url_without_connecting() {
        for addr in ["127.0.0.1:1", "http://127.0.0.1:1"] {
            let client = CoreClient::new(addr, Flavor::V2ray, Duration::from_secs(1)).unwrap();
            assert_eq!(client.flavor(), Flavor::V2ray);
        }
    }

    #[tokio::test]
    async fn xray_only_calls_are_unsupported_on_v2ray_without_a_call() {
        // Port 1 is closed: a call that reached the network would be Unavailable.
        let client = CoreClient::new("127.0.0.1:1", Flavor::V2ray, Duration::from_secs(5)).unwrap();
        assert!(matches!(
            client.inbound_users("x").await,
            Err(CoreError::Unsupported(_))
        ));
        assert!(matches!(
            client.inbound_users_count("x").await,
            Err(CoreError::Unsupported(_))
        ));
        assert!(matches!(
            client.list_inbounds().await,
            Err(CoreError::Unsupported(_))
        ));
        assert!(matches!(
            client.online_users().await,
            Err(CoreError::Unsupported(_))
        ));
        assert!(matches!(
            client.online_ips("u").await,
            Err(CoreError::Unsupported(_))
        ));
    }

    #[test]
    fn new_outside_a_runtime_is_an_error_not_a_panic() {
        let result = CoreClient::new("127.0.0.1:1", Flavor::Xray, Duration::from_secs(1));
        assert!(matches!(result, Err(CoreError::Other(_))));
    }

    #[tokio::test]
    async fn invalid_address_is_rejected() {
        let result = CoreClient::new("http://exa mple:1", Flavor::Xray, Duration::from_secs(1));
        assert!(matches!(result, Err(CoreError::Other(_))));
    }
}
