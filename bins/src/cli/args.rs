//! `xmctl`'s flags and commands (clap derive).

use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, Parser, Subcommand};

use super::config::Token;
use super::import::DEFAULT_CONCURRENCY;
use super::plan::{PlanArgs, RangeArgs};
use super::profile::ProfileArgs;

/// Shown at the end of every `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  usage or config error (bad flags, unreadable config, CSV or profile file, no token)
  2  the manager rejected the request (4xx; its error text is printed)
  3  authentication failed (401: the manager refused the admin token)
  4  the manager could not be reached (connection failed or timed out)
  5  the manager failed (5xx) or gave an answer that is not its API
  6  `user import` finished, but some rows failed

Settings come from flags, then XMCTL_* variables, then the config file
(`url = \"…\"`, `token = \"…\"`, `ca_file = \"…\"`), then defaults.";

/// Administer an xray-manager: nodes, users, bulk imports and health.
#[derive(Debug, Parser)]
#[command(name = "xmctl", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The manager's base URL [default: http://127.0.0.1:8080]
    #[arg(long, env = "XMCTL_URL", global = true, value_name = "URL")]
    pub url: Option<String>,
    /// The manager's admin token. Prefer XMCTL_TOKEN or the config file: a
    /// flag is visible to other local users in the process list
    #[arg(
        long,
        env = "XMCTL_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN",
        value_parser = parse_token
    )]
    pub token: Option<Token>,
    /// TOML file with `url` and `token` [default: ~/.config/xmctl/config.toml,
    /// read if present]
    #[arg(long, env = "XMCTL_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON (the API's answers) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Seconds to wait for each answer from the manager [default: 30]
    #[arg(long, global = true, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// PEM file of the CA that signed an https:// manager's certificate
    /// (e.g. a private CA); trusted instead of the built-in web roots
    #[arg(long, env = "XMCTL_CA_FILE", global = true, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

fn parse_token(raw: &str) -> Result<Token, String> {
    Ok(Token::new(raw))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register, start, stop, delete, list and show nodes; set their profiles
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Node(NodeCommand),
    /// Create, enable, disable, delete, list and import users; show and
    /// rotate their subscription URLs
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    User(UserCommand),
    /// Make, list and revoke scoped API tokens (read-only, users, admin)
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Token(TokenCommand),
    /// Who changed what through the API, newest first, filtered
    #[command(after_help = EXIT_CODES_HELP)]
    Audit(AuditArgs),
    /// The manager's health, nodes by actual status and users by status
    #[command(after_help = EXIT_CODES_HELP)]
    Status(PageArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; prints its text once (it is not stored and cannot be
    /// shown again)
    #[command(after_help = EXIT_CODES_HELP)]
    Create {
        /// 1 to 64 letters, digits, `-`, `_`, `.` or `@`; unique for good
        name: String,
        /// read-only (admin reads), users (reads and user changes) or admin
        #[arg(long, value_parser = ["read-only", "users", "admin"])]
        role: String,
        /// When it stops working: RFC 3339, Unix seconds, or +DURATION
        /// from now (e.g. +90d) [default: never]
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
    },
    /// Every token (revoked and expired ones too), never their texts
    #[command(after_help = EXIT_CODES_HELP)]
    List,
    /// Revoke a token: refused from now on
    #[command(after_help = EXIT_CODES_HELP)]
    Revoke {
        /// The token's id, as `token list` shows it
        id: String,
    },
}

/// Filters of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this actor: a token's name, or `bootstrap`
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this call, e.g. "POST /user/enable"
    #[arg(long)]
    pub call: Option<String>,
    /// Only calls about this user, node or token id
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Entries shown at most, newest first
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: u32,
}

/// How many items to ask for per page when listing.
#[derive(Debug, Args, Clone, Copy)]
pub struct PageArgs {
    /// Items fetched per request; every page is fetched until the end
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Register the node agent at ENDPOINT; prints the node's id and key
    /// (registering an endpoint again prints the same node)
    #[command(after_help = EXIT_CODES_HELP)]
    Add {
        // In `help`, not a doc comment: rustdoc would want the bare URL
        // as a link, and `--help` would then show the angle brackets.
        #[arg(help = "The agent's address, e.g. https://node1.example.com:8443")]
        endpoint: String,
    },
    /// Ask the node to run its proxy core (with every enabled user)
    #[command(after_help = EXIT_CODES_HELP)]
    Start {
        /// The node's id, as `node add` or `node list` shows it
        id: String,
    },
    /// Ask the node to stop its proxy core
    #[command(after_help = EXIT_CODES_HELP)]
    Stop {
        /// The node's id
        id: String,
    },
    /// Forget the node
    #[command(after_help = EXIT_CODES_HELP)]
    Delete {
        /// The node's id
        id: String,
    },
    /// Give the node a new key (printed once); its agent accepts the old
    /// one for the grace period, then only the new one
    #[command(after_help = EXIT_CODES_HELP)]
    RotateKey {
        /// The node's id
        id: String,
        /// Seconds the agent keeps accepting the old key once it has the
        /// new one: 0 (refused at once, for a key that leaked) to 2592000
        /// (30 days); default: the manager's (a day)
        #[arg(long, value_name = "SECS")]
        grace: Option<u64>,
    },
    /// List every node with its actual and required status
    #[command(after_help = EXIT_CODES_HELP)]
    List(PageArgs),
    /// Set what a byte through the node counts in users' totals (from now on)
    #[command(after_help = EXIT_CODES_HELP)]
    Multiplier {
        /// The node's id
        id: String,
        /// Above 0, at most 1000 (1 counts bytes as they are)
        value: f64,
    },
    /// Bytes through each node over a time range (raw, before multipliers)
    #[command(after_help = EXIT_CODES_HELP)]
    Usage(RangeArgs),
    /// The node with the inbounds its agent described, what subscriptions
    /// list of it, and its profile
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        /// The node's id
        id: String,
    },
    /// Set what subscriptions show of the node: the address clients dial,
    /// its name, per-inbound overrides
    ///
    /// With --file, the file is the whole new profile: what it leaves out
    /// is cleared, and --address and --remark override its fields. Without
    /// --file, only the flags given change: the current address, remark
    /// and per-inbound overrides are read first and kept, so `--address`
    /// alone never clears the overrides. Prints the node as `node show`
    /// does.
    #[command(after_help = EXIT_CODES_HELP)]
    Profile {
        /// The node's id
        id: String,
        #[command(flatten)]
        profile: ProfileArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (disabled until `user enable`); prints its id
    #[command(after_help = EXIT_CODES_HELP)]
    Add {
        /// The user's name (1 to 1024 bytes, not blank; names may repeat)
        name: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Change the user's plan (only the flags given change)
    #[command(after_help = EXIT_CODES_HELP)]
    Edit {
        /// The user's id
        id: String,
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// The user with plan, state and used bytes
    #[command(after_help = EXIT_CODES_HELP)]
    Show {
        /// The user's id
        id: String,
    },
    /// Zero the user's used bytes (a user cut by the limit comes back)
    #[command(after_help = EXIT_CODES_HELP)]
    ResetUsage {
        /// The user's id
        id: String,
    },
    /// The user's bytes over a time range, per day or per node
    #[command(after_help = EXIT_CODES_HELP)]
    Usage {
        /// The user's id
        id: String,
        #[command(flatten)]
        range: RangeArgs,
        /// Group by `day` or `node`
        #[arg(long, default_value = "day", value_parser = ["day", "node"])]
        by: String,
    },
    /// Put the user on every node
    #[command(after_help = EXIT_CODES_HELP)]
    Enable {
        /// The user's id
        id: String,
    },
    /// Take the user off every node
    #[command(after_help = EXIT_CODES_HELP)]
    Disable {
        /// The user's id
        id: String,
    },
    /// Forget the user
    #[command(after_help = EXIT_CODES_HELP)]
    Delete {
        /// The user's id
        id: String,
    },
    /// List every user with status, state, used bytes, limit and expiry
    #[command(after_help = EXIT_CODES_HELP)]
    List(PageArgs),
    /// The user's connection links, as the user's client fetches them (no
    /// token needed)
    #[command(after_help = EXIT_CODES_HELP)]
    Nodes {
        /// The user's id
        id: String,
        /// The user's name (must match the id)
        name: String,
    },
    /// The user's subscription URL, for their client app (the token too
    /// with --json)
    #[command(after_help = EXIT_CODES_HELP)]
    Subscription {
        /// The user's id
        id: String,
    },
    /// Give the user a new subscription URL; the old one stops working at
    /// once (404). Prints the new URL
    #[command(after_help = EXIT_CODES_HELP)]
    RotateSubscription {
        /// The user's id
        id: String,
    },
    /// List the devices (client apps sending a hardware id) that fetched
    /// the user's subscription, oldest first
    #[command(after_help = EXIT_CODES_HELP)]
    Devices {
        /// The user's id
        id: String,
    },
    /// Forget one of the user's devices: its next fetch counts as a new
    /// device (making room under the limit)
    #[command(after_help = EXIT_CODES_HELP)]
    ForgetDevice {
        /// The user's id
        id: String,
        /// The device's hardware id (as `user devices` lists it)
        hwid: String,
    },
    /// Set how many devices may fetch the user's subscription: a number (0
    /// for no limit) or `default` (the manager's `[subscription]
    /// device_limit`)
    #[command(after_help = EXIT_CODES_HELP)]
    DeviceLimit {
        /// The user's id
        id: String,
        /// A number of devices, 0 or `default`
        limit: String,
    },
    /// Create users from a CSV file with a `name` column and an optional
    /// `enabled` column (true/false); prints a summary with each failed line
    #[command(after_help = EXIT_CODES_HELP)]
    Import {
        /// The CSV file (first line is the header; `-` reads stdin)
        file: PathBuf,
        /// Rows sent to the manager at once
        #[arg(long, default_value_t = DEFAULT_CONCURRENCY,
              value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
        concurrency: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["xmctl", "user", "list", "--json", "--url", "http://x:1"])
            .expect("parses");
        assert!(cli.global.json);
        assert_eq!(cli.global.url.as_deref(), Some("http://x:1"));
        assert!(matches!(cli.command, Command::User(UserCommand::List(p)) if p.page_size == 1000));
    }

    #[test]
    fn parsed_flags_never_show_the_token() {
        let cli = Cli::try_parse_from(["xmctl", "--token", "hunter2", "status"]).expect("parses");
        assert!(!format!("{cli:?}").contains("hunter2"));
    }
}
