use std::io::Write as _;

use super::*;

const GOOD: &str = "a-webhook-secret-of-enough-characters";

fn with_endpoints(json: &str) -> Result<WebhookSettings, String> {
    let mut s = WebhookSettings::default();
    s.apply_env(&|k: &str| (k == "XM_WEBHOOKS_ENDPOINTS").then(|| json.to_owned()))?;
    s.validate()?;
    Ok(s)
}

#[test]
fn the_defaults_hold_and_send_nothing() {
    let s = WebhookSettings::default();
    s.validate().unwrap();
    assert!(s.routes().is_empty());
    assert!(s.endpoints(&|_: &str| None).unwrap().is_empty());
}

#[test]
fn endpoints_come_from_the_environment_with_their_filters() {
    let s = with_endpoints(
        r#"[{"name":"crm","url":"https://crm.example/hook","secret_env":"CRM_SECRET",
            "events":["user.limited","node.down"]}]"#,
    )
    .unwrap();
    let endpoints = s
        .endpoints(&|k: &str| (k == "CRM_SECRET").then(|| format!("{GOOD}\n")))
        .unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        endpoints[0].secret.expose(),
        GOOD,
        "trailing newline dropped"
    );
    assert_eq!(
        endpoints[0].events,
        [EventKind::UserLimited, EventKind::NodeDown].into()
    );
    assert!(
        !format!("{endpoints:?}").contains(GOOD),
        "the secret is redacted in Debug"
    );
}

#[test]
fn a_secret_file_is_read() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "{GOOD}").unwrap();
    let s = WebhookSettings {
        endpoints: vec![EndpointSettings {
            name: "crm".into(),
            url: "http://127.0.0.1:9/hook".into(),
            secret_file: Some(file.path().to_owned()),
            secret_env: None,
            events: vec![],
        }],
        ..WebhookSettings::default()
    };
    s.validate().unwrap();
    let endpoints = s.endpoints(&|_: &str| None).unwrap();
    assert_eq!(endpoints[0].secret.expose(), GOOD);
}

#[test]
fn bad_endpoints_are_refused_with_a_clear_error() {
    for (json, says) in [
        (r#"[{"name":"a","url":"ftp://x/"}]"#, "http(s)"),
        (r#"[{"name":"a","url":"https://x/"}]"#, "exactly one"),
        (
            r#"[{"name":"a","url":"https://x/","secret_env":"A","secret_file":"/f"}]"#,
            "exactly one",
        ),
        (
            r#"[{"name":"a","url":"https://x/","secret_env":"A"},
                {"name":"a","url":"https://y/","secret_env":"B"}]"#,
            "used twice",
        ),
        (
            r#"[{"name":"","url":"https://x/","secret_env":"A"}]"#,
            "name",
        ),
        (
            r#"[{"name":"a","url":"https://x/","secret_env":"A","events":["user.gone"]}]"#,
            "XM_WEBHOOKS_ENDPOINTS",
        ),
        ("not json", "XM_WEBHOOKS_ENDPOINTS"),
    ] {
        let err = with_endpoints(json).unwrap_err();
        assert!(err.contains(says), "{json}: {err}");
    }
}

#[test]
fn a_short_or_missing_secret_is_refused_without_showing_it() {
    let s = with_endpoints(r#"[{"name":"crm","url":"https://x/","secret_env":"S"}]"#).unwrap();
    let err = s
        .endpoints(&|_: &str| Some("short-secret".into()))
        .unwrap_err();
    assert!(err.contains("under 24"), "{err}");
    assert!(!err.contains("short-secret"), "{err}");
    let err = s.endpoints(&|_: &str| None).unwrap_err();
    assert!(err.contains("S is not set"), "{err}");
}

#[test]
fn tuning_is_checked_and_named() {
    let mut s = WebhookSettings::default();
    s.apply_env(&|k: &str| (k == "XM_WEBHOOKS_RETRY_MAX_SECS").then(|| "60".to_owned()))
        .unwrap();
    assert_eq!(s.delivery().retry_max, Duration::from_secs(60));
    let err = s
        .apply_env(&|k: &str| (k == "XM_WEBHOOKS_POLL_MS").then(|| "often".to_owned()))
        .unwrap_err();
    assert!(err.contains("XM_WEBHOOKS_POLL_MS"), "{err}");
    let short = WebhookSettings {
        delivered_days_kept: 3,
        expiring_within_days: 3,
        ..WebhookSettings::default()
    };
    assert!(
        short
            .validate()
            .unwrap_err()
            .contains("delivered_days_kept")
    );
    let zero = WebhookSettings {
        retry_initial_secs: 0,
        ..WebhookSettings::default()
    };
    assert!(zero.validate().is_err());
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let d = WebhookSettings::default().delivery();
    let secs: Vec<u64> = (1..=12).map(|n| d.backoff(n).as_secs()).collect();
    assert_eq!(
        secs,
        [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    );
    assert_eq!(d.backoff(u32::MAX).as_secs(), 3600);
}
