//! Errors of the core API, classified by meaning.
//!
//! The cores answer most failures with gRPC status UNKNOWN and a free-text
//! message, so the classification parses the text ([`classify`]). The texts
//! it knows are V2Ray 4.34's (seen live) and Xray's (same sentences, possibly
//! behind a `component: ` prefix and followed by ` > cause`).

/// A failed call to the core.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The inbound already holds a user with this email.
    #[error("user {email} already exists in the core")]
    UserExists { email: String },
    /// The inbound holds no user with this email.
    #[error("user {email} not found in the core")]
    UserNotFound { email: String },
    /// The core has no inbound with this tag.
    #[error("inbound {tag} not found in the core")]
    InboundNotFound { tag: String },
    /// The core has no counter with this name (yet: user counters appear at
    /// the user's first connection).
    #[error("stat counter {name} not found in the core")]
    StatNotFound { name: String },
    /// The call or protocol is not available on this core flavor; nothing was
    /// sent to the core.
    #[error("not supported by this core: {0}")]
    Unsupported(&'static str),
    /// The core could not be reached or did not answer in time; retrying later
    /// may help.
    #[error("core unavailable: {0}")]
    Unavailable(String),
    /// Anything else the core said (e.g. `proxy is not a UserManager`, an
    /// unknown message type), or an answer we could not understand.
    #[error("core error: {0}")]
    Other(String),
}

impl CoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_temporary(&self) -> bool {
        matches!(self, CoreError::Unavailable(_))
    }
}

impl From<tonic::Status> for CoreError {
    fn from(status: tonic::Status) -> Self {
        classify(status.code(), status.message())
    }
}

/// Maps a gRPC status code and message from the core to a [`CoreError`].
///
/// Pure, so the known texts can be tested without a core.
pub fn classify(code: tonic::Code, message: &str) -> CoreError {
    use tonic::Code;
    match code {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            return CoreError::Unavailable(format!("{code:?}: {message}"));
        }
        // tonic reports failures below gRPC (connection reset, h2 protocol
        // errors) as UNKNOWN with a "transport error" text.
        Code::Unknown if message.starts_with("transport error") => {
            return CoreError::Unavailable(message.to_owned());
        }
        _ => {}
    }
    if let Some(tag) = after_marker(message, "failed to get handler: ")
        .or_else(|| after_marker(message, "handler not found: "))
    {
        return CoreError::InboundNotFound { tag };
    }
    if let Some(email) = user_between(message, " already exists") {
        return CoreError::UserExists { email };
    }
    if let Some(email) = user_between(message, " not found") {
        return CoreError::UserNotFound { email };
    }
    if let Some(name) = stat_not_found(message) {
        return CoreError::StatNotFound { name };
    }
    if message.is_empty() {
        CoreError::Other(format!("{code:?}"))
    } else {
        CoreError::Other(message.to_owned())
    }
}

/// The text following `marker`, up to the next ` > ` (Xray's cause
/// separator) or the end.
fn after_marker(message: &str, marker: &str) -> Option<String> {
    let start = message.find(marker)? + marker.len();
    let rest = &message[start..];
    let end = rest.find(" > ").unwrap_or(rest.len());
    let value = rest[..end].trim();
    (!value.is_empty()).then(|| value.to_owned())
}

/// `X` from `User X<suffix>.` inside one ` > `-separated segment.
fn user_between(message: &str, suffix: &str) -> Option<String> {
    message.split(" > ").find_map(|segment| {
        let end = segment.find(suffix)?;
        let head = &segment[..end];
        let start = head.rfind("User ")? + "User ".len();
        let email = head[start..].trim();
        (!email.is_empty()).then(|| email.to_owned())
    })
}

/// A stat name (`a>>>b>>>c`) followed by ` not found`.
fn stat_not_found(message: &str) -> Option<String> {
    message.split(" > ").find_map(|segment| {
        let head = &segment[..segment.find(" not found")?];
        let name = head.rsplit(": ").next()?.trim();
        (name.contains(">>>")).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn unknown(message: &str) -> CoreError {
        classify(Code::Unknown, message)
    }

    #[test]
    fn v2ray_user_exists() {
        assert_eq!(
            unknown("User alice@test already exists."),
            CoreError::UserExists {
                email: "alice@test".into()
            }
        );
    }

    #[test]
    fn xray_user_exists_with_component_prefix() {
        assert_eq!(
            unknown("xray.app.proxyman.inbound: User x already exists."),
            CoreError::UserExists { email: "x".into() }
        );
        assert_eq!(
            unknown(
                "app/proxyman/command: failed to add user > proxy/vless/inbound: User 6a1f-uuid already exists."
            ),
            CoreError::UserExists {
                email: "6a1f-uuid".into()
            }
        );
    }

    #[test]
    fn user_not_found() {
        assert_eq!(
            unknown("User ghost@test not found."),
            CoreError::UserNotFound {
                email: "ghost@test".into()
            }
        );
        assert_eq!(
            unknown("proxy/vmess/inbound: User ghost not found."),
            CoreError::UserNotFound {
                email: "ghost".into()
            }
        );
    }

    #[test]
    fn v2ray_unknown_inbound() {
        assert_eq!(
            unknown("failed to get handler: nope"),
            CoreError::InboundNotFound { tag: "nope".into() }
        );
    }

    #[test]
    fn xray_unknown_inbound_with_cause_chain() {
        assert_eq!(
            unknown(
                "app/proxyman/command: failed to get handler: nope > app/proxyman/inbound: handler not found: nope"
            ),
            CoreError::InboundNotFound { tag: "nope".into() }
        );
        assert_eq!(
            unknown(
                "v2ray.core.app.proxyman.command: failed to get handler: vless-x > v2ray.core.app.proxyman.inbound: handler not found: vless-x"
            ),
            CoreError::InboundNotFound {
                tag: "vless-x".into()
            }
        );
    }

    #[test]
    fn not_a_user_manager_is_other_with_the_text() {
        assert_eq!(
            unknown("proxy is not a UserManager"),
            CoreError::Other("proxy is not a UserManager".into())
        );
    }

    #[test]
    fn wrong_type_prefix_is_other_with_the_text() {
        // As V2Ray 4.34 answers an Xray-flavored AddUserOperation.
        let text = "v2ray.com/core/app/proxyman/command: unknown operation > \
                    Serial: Unknown type: xray.app.proxyman.command.AddUserOperation";
        assert_eq!(unknown(text), CoreError::Other(text.into()));
    }

    #[test]
    fn missing_counter_is_stat_not_found() {
        assert_eq!(
            unknown("v2ray.core.app.stats.command: user>>>u1>>>traffic>>>uplink not found."),
            CoreError::StatNotFound {
                name: "user>>>u1>>>traffic>>>uplink".into()
            }
        );
        assert_eq!(
            classify(Code::NotFound, "user>>>u1>>>online not found."),
            CoreError::StatNotFound {
                name: "user>>>u1>>>online".into()
            }
        );
    }

    #[test]
    fn transport_failures_are_temporary() {
        for (code, text) in [
            (Code::Unavailable, "tcp connect error: Connection refused"),
            (Code::DeadlineExceeded, "Timeout expired"),
            (Code::Unknown, "transport error"),
        ] {
            let err = classify(code, text);
            assert!(
                matches!(err, CoreError::Unavailable(_)),
                "{code:?} {text}: {err:?}"
            );
            assert!(err.is_temporary());
        }
    }

    #[test]
    fn unimplemented_call_is_other_and_permanent() {
        let err = classify(
            Code::Unimplemented,
            "unknown service xray.app.proxyman.command.HandlerService",
        );
        assert_eq!(
            err,
            CoreError::Other("unknown service xray.app.proxyman.command.HandlerService".into())
        );
        assert!(!err.is_temporary());
    }

    #[test]
    fn only_unavailable_is_temporary() {
        assert!(!CoreError::UserExists { email: "a".into() }.is_temporary());
        assert!(!CoreError::Unsupported("x").is_temporary());
        assert!(!CoreError::Other("x".into()).is_temporary());
    }
}
