//! The CLI's errors, each with the exit code scripts rely on.

use std::fmt;

/// Exit codes of `xmctl` (also listed in `xmctl --help`).
pub mod exit {
    /// The command did what was asked.
    pub const SUCCESS: u8 = 0;
    /// Bad flags, a bad or missing config, CSV or profile file, no token for
    /// an admin call.
    pub const USAGE: u8 = 1;
    /// The manager rejected the request (a 4xx other than 401).
    pub const REJECTED: u8 = 2;
    /// The manager refused the admin token (401).
    pub const AUTH: u8 = 3;
    /// The manager could not be reached (connection failed or timed out).
    pub const UNREACHABLE: u8 = 4;
    /// The manager failed (5xx) or answered something that is not its API.
    pub const SERVER: u8 = 5;
    /// `user import` finished, but some rows failed.
    pub const IMPORT_FAILURES: u8 = 6;
}

/// What went wrong, by what the caller can do about it. No variant ever holds
/// the admin token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Flags, config file or input file are not usable.
    #[error("{0}")]
    Usage(String),
    /// A 4xx answer (other than 401) with the API's error text.
    #[error("the manager rejected the request ({status}): {}", ApiText(.error, .message))]
    Rejected {
        status: u16,
        error: String,
        message: Option<String>,
    },
    /// 401: the token is missing, wrong or revoked.
    #[error("authentication failed: the manager refused the admin token (401)")]
    Unauthorized,
    /// No answer: connection refused, DNS failure, timeout.
    #[error("could not reach the manager at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// A 5xx answer with the API's error text.
    #[error("the manager failed ({status}): {}", ApiText(.error, .message))]
    Server {
        status: u16,
        error: String,
        message: Option<String>,
    },
    /// An answer that is not what the API documents.
    #[error("unexpected answer from the manager: {0}")]
    BadAnswer(String),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => exit::USAGE,
            Self::Rejected { .. } => exit::REJECTED,
            Self::Unauthorized => exit::AUTH,
            Self::Unreachable { .. } => exit::UNREACHABLE,
            Self::Server { .. } | Self::BadAnswer(_) => exit::SERVER,
        }
    }

    /// The API's stable error text, when the manager gave one.
    pub fn api_error(&self) -> Option<&str> {
        match self {
            Self::Rejected { error, .. } | Self::Server { error, .. } => Some(error),
            Self::Unauthorized => Some("unauthorized"),
            _ => None,
        }
    }

    /// The API's details, when the manager gave some.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            Self::Rejected { message, .. } | Self::Server { message, .. } => message.as_deref(),
            _ => None,
        }
    }
}

/// `error` or `error: message`.
struct ApiText<'a>(&'a String, &'a Option<String>);

impl fmt::Display for ApiText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(m) if !m.is_empty() => write!(f, "{}: {}", self.0, m),
            _ => f.write_str(self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_shows_error_and_message_and_maps_to_2() {
        let e = CliError::Rejected {
            status: 400,
            error: "invalid user name".into(),
            message: Some("must not be blank".into()),
        };
        assert_eq!(
            e.to_string(),
            "the manager rejected the request (400): invalid user name: must not be blank"
        );
        assert_eq!(e.exit_code(), exit::REJECTED);
    }

    #[test]
    fn every_kind_has_its_documented_code() {
        let server = CliError::Server {
            status: 500,
            error: "database unavailable".into(),
            message: None,
        };
        assert_eq!(
            server.to_string(),
            "the manager failed (500): database unavailable"
        );
        assert_eq!(server.exit_code(), 5);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 1);
        assert_eq!(CliError::Unauthorized.exit_code(), 3);
        let down = CliError::Unreachable {
            url: "http://127.0.0.1:1/".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(down.exit_code(), 4);
        assert_eq!(CliError::BadAnswer("x".into()).exit_code(), 5);
    }
}
