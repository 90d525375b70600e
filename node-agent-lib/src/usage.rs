//! Traffic accounting on the node: the durable [`journal`] of usage batches
//! the manager pulls with `POST /usage`.

pub mod collector;
pub mod journal;
pub mod lifetime;
mod reader;
mod record;
mod sums;

pub use collector::{CollectError, Usage, UsageCounters};
pub use journal::{Journal, JournalError};
pub use lifetime::{LifetimeTotals, UserTotals, read_lifetime_totals};
pub use reader::{CoreApiTraffic, TrafficReader};
pub use sums::UserSums;
