use super::*;
use crate::core::ports::PortRange;
use std::sync::Arc;

#[test]
fn a_stat_answer_is_parsed_and_a_bad_one_refused() {
    let stat = parse_stat(r#"stat: {"8001":11370,"8002":0}"#).unwrap();
    assert_eq!(stat, HashMap::from([(8001, 11370), (8002, 0)]));
    assert!(parse_stat("stat: {}").unwrap().is_empty());
    for bad in ["ok", "stat: []", r#"stat: {"x":1}"#, r#"stat: {"1":-1}"#] {
        assert!(parse_stat(bad).is_err(), "{bad}");
    }
}

#[test]
fn growth_is_counted_once_and_a_restarted_counter_counts_from_zero() {
    let ports = PortMap::in_memory(PortRange::new(9000, 9999).unwrap());
    let a = ports.assign("a").unwrap();
    let mut t = Traffic::default();
    t.baseline.insert(a, 0);
    t.account(&HashMap::from([(a, 100)]), &ports);
    t.account(&HashMap::from([(a, 100)]), &ports);
    t.account(&HashMap::from([(a, 150)]), &ports);
    assert_eq!(t.banked["a"], 150, "no double count");
    // Its ss-server started again: 30 since.
    t.account(&HashMap::from([(a, 30)]), &ports);
    assert_eq!(t.banked["a"], 180);
    // The port is gone (core restart), then back from 0.
    t.account(&HashMap::new(), &ports);
    assert!(t.baseline.is_empty());
    t.account(&HashMap::from([(a, 500)]), &ports);
    assert_eq!(t.banked["a"], 680);
    // A port nobody here holds is not counted.
    t.account(&HashMap::from([(1, 5)]), &ports);
    assert_eq!(t.banked.len(), 1);
}

fn client(address: String) -> SsManagerClient {
    let ports = PortMap::in_memory(PortRange::new(9000, 9999).unwrap());
    SsManagerClient::new(address, Duration::from_millis(300), Arc::new(ports))
}

fn ss_user(email: &str) -> CoreUser {
    CoreUser {
        email: email.into(),
        level: 0,
        account: Account::Shadowsocks {
            password: "pw".into(),
            cipher: ShadowsocksCipher::Aes256Gcm,
        },
    }
}

#[tokio::test]
async fn a_manager_that_does_not_answer_is_unavailable_and_nothing_is_counted() {
    // Bound, so datagrams land, but nobody answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let c = client(silent.local_addr().unwrap().to_string());
    let e = c.uptime_secs().await.unwrap_err();
    assert!(e.is_temporary(), "{e}");
    let e = c.add_user(SS_MANAGER_TAG, &ss_user("a")).await.unwrap_err();
    assert!(matches!(e, CoreError::Unavailable(_)), "{e}");
    assert!(c.take_user_traffic().await.is_err());
}

#[tokio::test]
async fn a_wrong_tag_or_account_is_refused_before_anything_is_sent() {
    let c = client("127.0.0.1:9".into());
    let e = c.add_user("vless-in", &ss_user("a")).await.unwrap_err();
    assert!(matches!(e, CoreError::InboundNotFound { .. }), "{e}");
    let vless = CoreUser {
        email: "b".into(),
        level: 0,
        account: Account::Vless {
            id: "b".into(),
            flow: String::new(),
        },
    };
    let e = c.add_user(SS_MANAGER_TAG, &vless).await.unwrap_err();
    assert!(matches!(e, CoreError::Unsupported(_)), "{e}");
    assert_eq!(c.ports().get("b"), None, "no port given for a refused user");
}

#[tokio::test]
async fn a_refusal_is_reported_with_ss_managers_answer() {
    // A stand-in answering `ping` with an empty map and anything else `err`.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let answer: &[u8] = if &buf[..n] == b"ping" {
                b"stat: {}"
            } else {
                b"err"
            };
            let _ = socket.send_to(answer, from).await;
        }
    });
    let c = client(address);
    let e = c.add_user(SS_MANAGER_TAG, &ss_user("a")).await.unwrap_err();
    assert!(
        matches!(&e, CoreError::Other(why) if why.contains("refused") && why.ends_with("err")),
        "{e}"
    );
    assert!(!e.to_string().contains("pw"), "no password in errors: {e}");
    let e = c.remove_user(SS_MANAGER_TAG, "a").await.unwrap_err();
    assert!(matches!(e, CoreError::UserNotFound { .. }), "{e}");
}
