//! `user import`: users from a CSV file, created (and enabled when asked)
//! with a bounded number of requests in flight.
//!
//! The file needs a header with a `name` column; an `enabled` column
//! (`true`/`false`, `yes`/`no`, `1`/`0`, empty = false) is optional. Lines
//! are counted like an editor does: the header is line 1.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use indicatif::ProgressBar;
use serde::Serialize;

use super::client::Client;
use super::error::CliError;

/// Requests in flight at once when `--concurrency` is not given.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// One user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: u64,
    pub name: String,
    pub enabled: bool,
}

/// A row that did not end as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportFailure {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The API's stable error text, or what was wrong with the row.
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Set when the user was created but enabling it failed.
    #[serde(rename = "userID", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

impl ImportFailure {
    fn bad_row(line: u64, name: Option<String>, error: impl Into<String>) -> Self {
        Self {
            line,
            name,
            error: error.into(),
            message: None,
            user_id: None,
        }
    }

    fn from_error(row: &ImportRow, e: &CliError, user_id: Option<String>) -> Self {
        let (error, message) = match e.api_error() {
            Some(error) => (error.to_owned(), e.api_message().map(str::to_owned)),
            None => (e.to_string(), None),
        };
        Self {
            line: row.line,
            name: Some(row.name.clone()),
            error,
            message,
            user_id,
        }
    }

    /// The reason in one line, for people.
    pub fn reason(&self) -> String {
        let mut r = self.error.clone();
        if let Some(m) = &self.message {
            r = format!("{r}: {m}");
        }
        if let Some(id) = &self.user_id {
            r = format!("created as {id}, but not enabled: {r}");
        }
        r
    }
}

/// A user the import created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportedUser {
    pub line: u64,
    pub id: String,
    pub name: String,
    pub enabled: bool,
}

/// What an import did; printed as a table or, with `--json`, as this JSON.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportSummary {
    pub created: usize,
    pub enabled: usize,
    pub failed: usize,
    /// Rows never sent because the import stopped early.
    pub skipped: usize,
    /// Why the import stopped early (wrong token, manager gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
    pub failures: Vec<ImportFailure>,
    pub users: Vec<ImportedUser>,
}

/// Reads the CSV: the rows to send, and the rows already known to be bad
/// (a missing name field, an `enabled` that is not a boolean). A file without
/// a `name` column, or one that cannot be read, is a usage error.
pub fn read_rows(input: impl Read) -> Result<(Vec<ImportRow>, Vec<ImportFailure>), CliError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| CliError::Usage(format!("cannot read the CSV header: {e}")))?
        .clone();
    let column = |want: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(want));
    let name_col = column("name").ok_or_else(|| {
        CliError::Usage(format!(
            "the CSV header has no `name` column (found: {})",
            headers.iter().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let enabled_col = column("enabled");

    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut last_error_line = None;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) if e.is_io_error() => {
                return Err(CliError::Usage(format!("cannot read the CSV file: {e}")));
            }
            Err(e) => {
                let line = e.position().map(|p| p.line());
                if line.is_none() || line == last_error_line {
                    return Err(CliError::Usage(format!("cannot parse the CSV file: {e}")));
                }
                last_error_line = line;
                bad.push(ImportFailure::bad_row(
                    line.unwrap_or_default(),
                    None,
                    format!("not valid CSV: {e}"),
                ));
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or_default();
        let Some(name) = record.get(name_col) else {
            bad.push(ImportFailure::bad_row(
                line,
                None,
                "no `name` field on this line",
            ));
            continue;
        };
        let enabled = match enabled_col.and_then(|c| record.get(c)) {
            None => false,
            Some(raw) => match parse_bool(raw) {
                Some(b) => b,
                None => {
                    bad.push(ImportFailure::bad_row(
                        line,
                        Some(name.to_owned()),
                        format!("`enabled` must be true or false, not {raw:?}"),
                    ));
                    continue;
                }
            },
        };
        rows.push(ImportRow {
            line,
            name: name.to_owned(),
            enabled,
        });
    }
    Ok((rows, bad))
}

fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "no" | "n" | "0" => Some(false),
        "true" | "yes" | "y" | "1" => Some(true),
        _ => None,
    }
}

enum Outcome {
    Done(ImportedUser),
    /// Created (if `Some`) but then failed, or not created at all.
    Failed(ImportFailure, Option<ImportedUser>),
    /// The failure that stops the whole import.
    Abort(ImportFailure, Option<ImportedUser>, CliError),
    Skipped,
}

/// A failure no later row can escape: every row would fail the same way.
fn stops_the_import(e: &CliError) -> bool {
    matches!(
        e,
        CliError::Unauthorized | CliError::Unreachable { .. } | CliError::Usage(_)
    )
}

async fn import_row(client: &Client, row: &ImportRow, stop: &AtomicBool) -> Outcome {
    if stop.load(Ordering::SeqCst) {
        return Outcome::Skipped;
    }
    let fail = |e: CliError, created: Option<ImportedUser>| {
        let failure = ImportFailure::from_error(row, &e, created.as_ref().map(|u| u.id.clone()));
        if stops_the_import(&e) {
            stop.store(true, Ordering::SeqCst);
            Outcome::Abort(failure, created, e)
        } else {
            Outcome::Failed(failure, created)
        }
    };
    let user = match client.user_new(&row.name, serde_json::Map::new()).await {
        Ok(created) => created.user,
        Err(e) => return fail(e, None),
    };
    let mut imported = ImportedUser {
        line: row.line,
        id: user.id,
        name: user.name,
        enabled: false,
    };
    if row.enabled {
        if let Err(e) = client.user_enable(&imported.id).await {
            return fail(e, Some(imported));
        }
        imported.enabled = true;
    }
    Outcome::Done(imported)
}

/// Creates the rows' users with at most `concurrency` rows in flight,
/// ticking `progress` once per row. Rows already known bad (`bad`) count as
/// failures. The error, if any, is what stopped the import early; the
/// summary then still says what was done before.
pub async fn import(
    client: &Client,
    rows: &[ImportRow],
    bad: Vec<ImportFailure>,
    concurrency: usize,
    progress: &ProgressBar,
) -> (ImportSummary, Option<CliError>) {
    let stop = AtomicBool::new(false);
    let mut summary = ImportSummary {
        failures: bad,
        ..ImportSummary::default()
    };
    let mut abort: Option<CliError> = None;
    progress.inc(summary.failures.len() as u64);

    let mut outcomes = futures::stream::iter(rows)
        .map(|row| import_row(client, row, &stop))
        .buffer_unordered(concurrency.max(1));
    while let Some(outcome) = outcomes.next().await {
        progress.inc(1);
        match outcome {
            Outcome::Done(user) => summary.users.push(user),
            Outcome::Failed(failure, created) => {
                summary.failures.push(failure);
                summary.users.extend(created);
            }
            Outcome::Abort(failure, created, e) => {
                summary.failures.push(failure);
                summary.users.extend(created);
                if abort.is_none() {
                    summary.aborted = Some(e.to_string());
                    abort = Some(e);
                }
            }
            Outcome::Skipped => summary.skipped += 1,
        }
    }
    summary.failures.sort_by_key(|f| f.line);
    summary.users.sort_by_key(|u| u.line);
    summary.created = summary.users.len();
    summary.enabled = summary.users.iter().filter(|u| u.enabled).count();
    summary.failed = summary.failures.len();
    (summary, abort)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_carry_editor_line_numbers_and_the_enabled_flag() {
        let csv = "name,enabled\nalice,true\nbob,\n\"carol, jr\",YES\n";
        let (rows, bad) = read_rows(csv.as_bytes()).expect("valid CSV");
        assert!(bad.is_empty(), "{bad:?}");
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.line, r.name.as_str(), r.enabled))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "alice", true),
                (3, "bob", false),
                (4, "carol, jr", true)
            ]
        );
    }

    #[test]
    fn the_enabled_column_is_optional_and_headers_are_trimmed() {
        let (rows, bad) = read_rows(" Name \nalice\n".as_bytes()).expect("valid CSV");
        assert!(bad.is_empty());
        assert_eq!(
            rows,
            vec![ImportRow {
                line: 2,
                name: "alice".into(),
                enabled: false
            }]
        );
    }

    #[test]
    fn bad_rows_are_failures_with_their_line() {
        let csv = "id,name,enabled\n1,alice,maybe\n2\n3,bob,no\n";
        let (rows, bad) = read_rows(csv.as_bytes()).expect("valid CSV");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "bob");
        assert_eq!(bad.iter().map(|f| f.line).collect::<Vec<_>>(), vec![2, 3]);
        assert!(bad[0].reason().contains("maybe"), "{}", bad[0].reason());
    }

    #[test]
    fn a_file_without_a_name_column_is_a_usage_error() {
        let err = read_rows("user,enabled\nalice,true\n".as_bytes()).expect_err("no name column");
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn a_failed_enable_names_the_created_user() {
        let f = ImportFailure {
            line: 7,
            name: Some("x".into()),
            error: "database unavailable".into(),
            message: None,
            user_id: Some("u-1".into()),
        };
        assert_eq!(
            f.reason(),
            "created as u-1, but not enabled: database unavailable"
        );
    }
}
