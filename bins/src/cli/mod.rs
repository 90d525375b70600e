//! `xmctl`, the admin CLI of xray-manager: a typed client over the manager's
//! HTTP API ([`client`]), its output as tables or JSON ([`output`]), the
//! bulk user import from CSV ([`import`]), users' subscription URLs
//! ([`subscription`]), nodes' profiles ([`profile`]) and key rotation
//! ([`node_keys`]), and scoped tokens and the audit log ([`tokens`]). The binary only
//! parses flags and calls [`run`].
//!
//! ```text
//! XMCTL_URL=http://127.0.0.1:8080 XMCTL_TOKEN=… xmctl user list --json
//! ```
//!
//! Settings: flag, then `XMCTL_URL` / `XMCTL_TOKEN` / `XMCTL_CONFIG`, then the
//! config file (`url`, `token`; default `~/.config/xmctl/config.toml` when it
//! exists), then `http://127.0.0.1:8080`. The token is never printed.
//!
//! # Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | usage or config error (bad flags, unreadable config, CSV or profile file, no token) |
//! | 2 | the manager rejected the request (4xx; its error text is printed) |
//! | 3 | authentication failed (401) |
//! | 4 | the manager could not be reached (connection failed or timed out) |
//! | 5 | the manager failed (5xx) or answered something that is not its API |
//! | 6 | `user import` finished, but some rows failed |

pub mod args;
pub mod client;
pub mod config;
pub mod devices;
pub mod error;
pub mod import;
pub mod node_keys;
pub mod output;
pub mod plan;
pub mod profile;
pub mod subscription;
pub mod tokens;

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use self::args::{Cli, Command, NodeCommand, UserCommand};
use self::client::Client;
use self::error::{CliError, exit};
use self::output::emit;

/// Runs one parsed command, prints its result (stdout) or error (stderr),
/// and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    match execute(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xmctl: {e}");
            e.exit_code()
        }
    }
}

async fn execute(cli: Cli) -> Result<u8, CliError> {
    let g = cli.global;
    let settings = config::resolve(
        g.url,
        g.token.map(|t| t.expose().to_owned()),
        g.config.as_deref(),
        g.timeout,
        g.ca_file,
    )?;
    let client = Client::new(&settings)?;
    let json = g.json;

    match cli.command {
        Command::Node(cmd) => match cmd {
            NodeCommand::Add { endpoint } => {
                let node = client.node_new(&endpoint).await?;
                show(json, &node, output::node_created(&node));
            }
            NodeCommand::Start { id } => {
                let answer = client.node_start(&id).await?;
                show(json, &answer, format!("node {id}: started"));
            }
            NodeCommand::Stop { id } => {
                let answer = client.node_stop(&id).await?;
                show(json, &answer, format!("node {id}: stopped"));
            }
            NodeCommand::Delete { id } => {
                let answer = client.node_delete(&id).await?;
                show(json, &answer, format!("node {id}: deleted"));
            }
            NodeCommand::RotateKey { id, grace } => {
                let answer = client.node_key_rotate(&id, grace).await?;
                show(json, &answer, node_keys::rotated(&answer));
            }
            NodeCommand::List(page) => {
                let nodes = client.all_nodes(page.page_size).await?;
                show(
                    json,
                    &serde_json::json!({ "nodes": nodes }),
                    output::nodes_table(&nodes),
                );
            }
            NodeCommand::Multiplier { id, value } => {
                let answer = client.node_multiplier(&id, value).await?;
                show(
                    json,
                    &answer,
                    format!("node {id}: traffic multiplier {value}"),
                );
            }
            NodeCommand::Usage(range) => {
                let range = plan::range_query(&range, now()).map_err(CliError::Usage)?;
                let usage = client.nodes_usage(&range).await?;
                show(json, &usage, output::usage_table(&usage.usage));
            }
            NodeCommand::Show { id } => {
                let answer = client.node_get(&id).await?;
                show(json, &answer, profile::node_details(&answer.node));
            }
            NodeCommand::Profile { id, profile: args } => {
                // The file first: a bad one fails before any call.
                let base = match &args.file {
                    Some(file) => profile::load_file(file)?,
                    None if args.is_empty() => {
                        return Err(CliError::Usage(
                            "nothing to change: give --address, --remark or --file".into(),
                        ));
                    }
                    None => client.node_get(&id).await?.node.profile,
                };
                let answer = client.node_profile(&id, args.apply(base)).await?;
                show(json, &answer, profile::node_details(&answer.node));
            }
        },
        Command::User(cmd) => match cmd {
            UserCommand::Add { name, plan } => {
                let fields = plan.fields(now()).map_err(CliError::Usage)?;
                let created = client.user_new(&name, fields).await?;
                show(json, &created, output::user_created(&created.user));
            }
            UserCommand::Edit { id, plan } => {
                if plan.is_empty() {
                    return Err(CliError::Usage(
                        "nothing to change: give --limit, --expire, --reset or --on-hold".into(),
                    ));
                }
                let fields = plan.fields(now()).map_err(CliError::Usage)?;
                let answer = client.user_edit(&id, fields).await?;
                show(json, &answer, output::user_details(&answer.user));
            }
            UserCommand::Show { id } => {
                let answer = client.user_get(&id).await?;
                show(json, &answer, output::user_details(&answer.user));
            }
            UserCommand::ResetUsage { id } => {
                let answer = client.user_reset_usage(&id).await?;
                show(json, &answer, output::user_details(&answer.user));
            }
            UserCommand::Usage { id, range, by } => {
                let range = plan::range_query(&range, now()).map_err(CliError::Usage)?;
                let usage = client.user_usage(&id, &range, &by).await?;
                show(json, &usage, output::usage_table(&usage.usage));
            }
            UserCommand::Enable { id } => {
                let answer = client.user_enable(&id).await?;
                show(json, &answer, format!("user {id}: enabled"));
            }
            UserCommand::Disable { id } => {
                let answer = client.user_disable(&id).await?;
                show(json, &answer, format!("user {id}: disabled"));
            }
            UserCommand::Delete { id } => {
                let answer = client.user_delete(&id).await?;
                show(json, &answer, format!("user {id}: deleted"));
            }
            UserCommand::List(page) => {
                let users = client.all_users(page.page_size).await?;
                show(
                    json,
                    &serde_json::json!({ "users": users }),
                    output::users_table(&users),
                );
            }
            UserCommand::Nodes { id, name } => {
                let links = client.user_nodes(&id, &name).await?;
                show(json, &links, output::links(&links));
            }
            UserCommand::Subscription { id } => {
                let answer = client.user_subscription(&id).await?;
                show_subscription(&client, json, &answer, None);
            }
            UserCommand::RotateSubscription { id } => {
                let answer = client.user_subscription_rotate(&id).await?;
                let done = format!("user {id}: new subscription URL; the old one answers 404 now");
                show_subscription(&client, json, &answer, Some(done));
            }
            UserCommand::Devices { id } => {
                let answer = client.user_devices(&id).await?;
                show(json, &answer, devices::devices_table(&answer.devices));
            }
            UserCommand::ForgetDevice { id, hwid } => {
                client.user_device_delete(&id, &hwid).await?;
                let done = format!("user {id}: device {hwid} forgotten");
                show(json, &serde_json::json!({}), done);
            }
            UserCommand::DeviceLimit { id, limit } => {
                let limit = devices::parse_limit(&limit).map_err(CliError::Usage)?;
                let answer = client.user_device_limit(&id, limit).await?;
                show(json, &answer, output::user_details(&answer.user));
            }
            UserCommand::Import { file, concurrency } => {
                return import_file(&client, &file, concurrency, json).await;
            }
        },
        Command::Token(cmd) => {
            let (answer, human) = tokens::run_token(&client, cmd, now()).await?;
            show(json, &answer, human);
        }
        Command::Audit(args) => {
            let (answer, human) = tokens::run_audit(&client, &args, now()).await?;
            show(json, &answer, human);
        }
        Command::Status(page) => {
            let health = client.health().await?;
            let nodes = client.all_nodes(page.page_size).await?;
            let users = client.all_users(page.page_size).await?;
            let report = output::StatusReport::new(client.base_url(), health, &nodes, &users);
            show(json, &report, report.human());
        }
    }
    Ok(exit::SUCCESS)
}

/// Unix seconds now (anchors `+30d` and `-7d` in flags).
fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn import_file(
    client: &Client,
    file: &std::path::Path,
    concurrency: usize,
    json: bool,
) -> Result<u8, CliError> {
    if !client.has_token() {
        // Fail before reading a large file, with the same text as any admin call.
        return Err(CliError::Usage(
            "no admin token: pass --token, set XMCTL_TOKEN, or put `token` in the config file"
                .into(),
        ));
    }
    let (rows, bad) = if file.as_os_str() == "-" {
        import::read_rows(std::io::stdin().lock())?
    } else {
        let f = std::fs::File::open(file)
            .map_err(|e| CliError::Usage(format!("cannot open {}: {e}", file.display())))?;
        import::read_rows(std::io::BufReader::new(f))?
    };
    let total = (rows.len() + bad.len()) as u64;
    let progress = if json || !std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden())
    } else {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} users ({per_sec}, eta {eta})")
        {
            bar.set_style(style);
        }
        bar
    };
    let (summary, abort) = import::import(client, &rows, bad, concurrency, &progress).await;
    progress.finish_and_clear();
    if json {
        emit(&output::json(&summary));
    } else {
        emit(&output::import_summary(&summary));
    }
    match abort {
        Some(e) => Err(e),
        None if summary.failed > 0 => Ok(exit::IMPORT_FAILURES),
        None => Ok(exit::SUCCESS),
    }
}

/// The API's answer with `--json`; else the URL alone on stdout and what
/// people should know (`done`, the note of [`subscription::shown_url`]) on
/// stderr, so that `$(xmctl user subscription ID)` is the URL.
fn show_subscription(
    client: &Client,
    json: bool,
    answer: &subscription::SubscriptionAnswer,
    done: Option<String>,
) {
    if json {
        emit(&output::json(answer));
        return;
    }
    let shown = subscription::shown_url(client.base(), &answer.subscription.url);
    for line in done.into_iter().chain(shown.note) {
        eprintln!("xmctl: {line}");
    }
    emit(&shown.url);
}

/// Prints the API's answer with `--json`, else the text for people.
fn show<T: serde::Serialize + ?Sized>(json: bool, value: &T, human: String) {
    emit(&if json { output::json(value) } else { human });
}
