//! A client for the gRPC API of the proxy core — Xray-core, or Debian's V2Ray
//! 4.34 — to add and remove users at runtime and read traffic stats. One set
//! of messages serves both; a runtime [`Flavor`] picks the package names.
//!
//! ```no_run
//! # async fn demo() -> Result<(), xray_core_client::CoreError> {
//! use std::time::Duration;
//! use xray_core_client::{Account, CoreClient, CoreUser, Flavor};
//!
//! let core = CoreClient::new("127.0.0.1:10085", Flavor::Xray, Duration::from_secs(3))?;
//! let user = CoreUser {
//!     email: "7d4f…@node".into(),
//!     level: 0,
//!     account: Account::Vless { id: "7d4f…".into(), flow: String::new() },
//! };
//! core.add_user("vless-in", &user).await?;
//! let (up, down) = core.user_traffic(&user.email, false).await?;
//! # Ok(()) }
//! ```
//!
//! With feature `testing`, `testing` starts real core processes for tests.

mod client;
mod error;
mod flavor;
mod stat_stream;
mod stats;
mod user;

#[cfg(feature = "testing")]
pub mod testing;

/// Messages generated from proto/coreapi.proto.
/// (`QueryStatsResponse` is parsed by hand, in `stat_stream`: only tests build one.)
#[allow(clippy::all, clippy::pedantic, missing_docs, dead_code)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/coreapi.rs"));
}

pub use client::{CoreClient, MAX_MESSAGE_BYTES};
pub use error::{CoreError, classify};
pub use flavor::{Flavor, ParseFlavorError};
pub use stat_stream::StatSink;
pub use stats::{Direction, Stat, SysStats, user_traffic_stat_name};
pub use user::{Account, CoreUser, ShadowsocksCipher};
