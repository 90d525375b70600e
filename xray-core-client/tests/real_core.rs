//! The client against a real core (Debian's V2Ray 4.34 unless `V2RAY_BIN`
//! says otherwise). Each test starts its own core on free ports; without a
//! core binary they skip (and fail under `CI=true`).

use std::time::{Duration, Instant};

use xray_core_client::testing::{
    TestClientCore, TestCore, VLESS_TAG, VMESS_TAG, fetch_via_socks, free_port, serve_bytes,
    serve_exchange, vless_exchange, vless_user, vless_user_with_id, vmess_user,
};
use xray_core_client::{
    Account, CoreClient, CoreError, CoreUser, Direction, Flavor, ShadowsocksCipher,
    user_traffic_stat_name,
};

/// Upper bound for conditions that should hold within moments.
const DEADLINE: Duration = Duration::from_secs(10);

macro_rules! start_core {
    ($users:expr) => {
        match TestCore::start($users).await {
            Some(core) => core,
            None => return,
        }
    };
}

/// Polls `check` until it yields `Some`, or panics after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_user_added_at_runtime_can_be_removed() {
    let core = start_core!(&[]);
    let user = vless_user("runtime@test");
    core.client().add_user(VLESS_TAG, &user).await.unwrap();
    core.client()
        .remove_user(VLESS_TAG, &user.email)
        .await
        .unwrap();
    // Gone for real: a second removal finds nothing.
    assert_eq!(
        core.client().remove_user(VLESS_TAG, &user.email).await,
        Err(CoreError::UserNotFound {
            email: user.email.clone()
        })
    );
}

#[tokio::test]
async fn adding_the_same_email_twice_is_user_exists() {
    let core = start_core!(&[]);
    let user = vmess_user("twice@test");
    core.client().add_user(VMESS_TAG, &user).await.unwrap();
    assert_eq!(
        core.client().add_user(VMESS_TAG, &user).await,
        Err(CoreError::UserExists {
            email: "twice@test".into()
        })
    );
}

#[tokio::test]
async fn a_user_from_the_config_file_exists_in_the_core() {
    let user = vless_user("configured@test");
    let core = start_core!(std::slice::from_ref(&user));
    assert_eq!(
        core.client().add_user(VLESS_TAG, &user).await,
        Err(CoreError::UserExists {
            email: user.email.clone()
        })
    );
}

#[tokio::test]
async fn removing_a_missing_user_is_user_not_found() {
    let core = start_core!(&[]);
    assert_eq!(
        core.client().remove_user(VLESS_TAG, "ghost@test").await,
        Err(CoreError::UserNotFound {
            email: "ghost@test".into()
        })
    );
}

#[tokio::test]
async fn an_unknown_inbound_tag_is_inbound_not_found() {
    let core = start_core!(&[]);
    let expected = Err(CoreError::InboundNotFound { tag: "nope".into() });
    assert_eq!(
        core.client().add_user("nope", &vless_user("a@test")).await,
        expected
    );
    assert_eq!(core.client().remove_user("nope", "a@test").await, expected);
}

#[tokio::test]
async fn shadowsocks_users_are_unsupported_on_v2ray_without_a_call() {
    // Nothing listens on this port: had the client called, it would be Unavailable.
    let client = CoreClient::new(
        &format!("127.0.0.1:{}", free_port()),
        Flavor::V2ray,
        Duration::from_secs(5),
    )
    .unwrap();
    let user = CoreUser {
        email: "ss@test".into(),
        level: 0,
        account: Account::Shadowsocks {
            password: "pw".into(),
            cipher: ShadowsocksCipher::Aes256Gcm,
        },
    };
    assert!(matches!(
        client.add_user("ss-in", &user).await,
        Err(CoreError::Unsupported(_))
    ));
}

#[tokio::test]
async fn a_closed_port_is_unavailable_and_temporary() {
    let client = CoreClient::new(
        &format!("127.0.0.1:{}", free_port()),
        Flavor::V2ray,
        Duration::from_secs(30),
    )
    .unwrap();
    let started = Instant::now();
    let err = client.sys_stats().await.unwrap_err();
    assert!(matches!(err, CoreError::Unavailable(_)), "{err:?}");
    assert!(err.is_temporary());
    // A refused connection is reported at once, not after the 30 s timeout.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_silent_server_is_unavailable_after_the_timeout() {
    // Accepts TCP but never speaks HTTP/2.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let client = CoreClient::new(
        &format!("127.0.0.1:{port}"),
        Flavor::V2ray,
        Duration::from_millis(300),
    )
    .unwrap();
    let started = Instant::now();
    let err = client.query_stats("", false).await.unwrap_err();
    assert!(matches!(err, CoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_type_prefix_is_other_with_the_core_text() {
    let core = start_core!(&[]);
    let wrong = match core.flavor() {
        Flavor::V2ray => "xray.",
        Flavor::Xray => "v2ray.core.",
    };
    let err = core
        .client()
        .with_type_prefix(wrong)
        .add_user(VLESS_TAG, &vless_user("prefix@test"))
        .await
        .unwrap_err();
    match err {
        CoreError::Other(text) => {
            assert!(text.contains("Unknown type"), "{text}");
            assert!(text.contains(wrong), "{text}");
        }
        other => panic!("expected Other, got {other:?}"),
    }
}

#[tokio::test]
async fn the_wrong_flavor_altogether_is_a_permanent_error() {
    let core = start_core!(&[]);
    let wrong = match core.flavor() {
        Flavor::V2ray => Flavor::Xray,
        // Xray also answers V2Ray's service paths, so only V2Ray rejects them.
        Flavor::Xray => return,
    };
    let client = CoreClient::new(&core.api_addr(), wrong, Duration::from_secs(5)).unwrap();
    let err = client.sys_stats().await.unwrap_err();
    assert!(matches!(err, CoreError::Other(_)), "{err:?}");
    assert!(!err.is_temporary());
}

#[tokio::test]
async fn sys_stats_reports_a_running_core_and_its_uptime() {
    let core = start_core!(&[]);
    let first = core.client().sys_stats().await.unwrap();
    assert!(first.num_goroutine > 0, "{first:?}");
    assert!(first.alloc > 0, "{first:?}");
    // Uptime is in whole seconds, so a fresh core may say 0; it must advance.
    eventually("uptime to advance", || async {
        let now = core.client().sys_stats().await.unwrap();
        (now.uptime_secs > first.uptime_secs).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_counter_that_does_not_exist_is_stat_not_found() {
    let core = start_core!(&[]);
    let name = user_traffic_stat_name("never@test", Direction::Uplink);
    assert_eq!(
        core.client().get_stat(&name, false).await,
        Err(CoreError::StatNotFound { name })
    );
    assert_eq!(
        core.client().user_traffic("never@test", false).await,
        Ok((0, 0))
    );
}

/// Adds `user` at runtime, proxies a download through a client core as that
/// user, checks the user's counters, then removes the user and checks that
/// the same download fails.
async fn runtime_user_carries_counted_traffic_until_removed(user: CoreUser, tag: &str) {
    let core = start_core!(&[]);
    let Some(client_core) = TestClientCore::for_user(&core, &user).await else {
        return;
    };
    const SIZE: usize = 200_000;
    let (http, _server) = serve_bytes(SIZE).await;
    let url = format!("http://{http}/blob");

    assert!(
        fetch_via_socks(client_core.socks_port(), &url)
            .await
            .is_err(),
        "an unknown user must not get through"
    );

    core.client().add_user(tag, &user).await.unwrap();
    let body = fetch_via_socks(client_core.socks_port(), &url)
        .await
        .unwrap_or_else(|e| panic!("fetch as a runtime user: {e}\ncore log:\n{}", core.log()));
    assert_eq!(body.len(), SIZE);

    let (up, down) = eventually("the user's downlink to count the download", || async {
        let (up, down) = core
            .client()
            .user_traffic(&user.email, false)
            .await
            .unwrap();
        (down > SIZE as i64).then_some((up, down))
    })
    .await;
    assert!(up > 0, "uplink {up}");
    let exact = core
        .client()
        .get_stat(
            &user_traffic_stat_name(&user.email, Direction::Downlink),
            false,
        )
        .await
        .unwrap();
    assert!(exact >= down, "GetStats {exact} < QueryStats {down}");

    // Reading with reset hands out the totals once, then starts from zero.
    let (_, reset_down) = core.client().user_traffic(&user.email, true).await.unwrap();
    assert!(reset_down >= down);
    assert_eq!(
        core.client().user_traffic(&user.email, false).await,
        Ok((0, 0))
    );

    core.client().remove_user(tag, &user.email).await.unwrap();
    assert!(
        fetch_via_socks(client_core.socks_port(), &url)
            .await
            .is_err(),
        "a removed user must not get through"
    );
}

#[tokio::test]
async fn a_vless_user_added_at_runtime_carries_counted_traffic_until_removed() {
    runtime_user_carries_counted_traffic_until_removed(vless_user("vless-traffic@test"), VLESS_TAG)
        .await;
}

#[tokio::test]
async fn a_vmess_user_added_at_runtime_carries_counted_traffic_until_removed() {
    runtime_user_carries_counted_traffic_until_removed(vmess_user("vmess-traffic@test"), VMESS_TAG)
        .await;
}

/// An answer of many HTTP/2 frames (300 users' counters, about 40 KB;
/// frames are 16 KiB) streamed into a sink: every counter once, with the
/// value the core's `GetStats` gives it; with `reset` each is handed out
/// once, then reads zero.
#[tokio::test]
async fn a_streamed_answer_of_many_frames_hands_out_every_counter_once() {
    const USERS: u128 = 300;
    let ids: Vec<uuid::Uuid> = (1..=USERS)
        .map(|i| uuid::Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
        .collect();
    let users: Vec<CoreUser> = ids
        .iter()
        .map(|id| vless_user_with_id(&id.to_string()))
        .collect();
    let core = start_core!(&users);
    let (target, _server) = serve_exchange(100, 1000).await;
    for id in &ids {
        assert!(
            vless_exchange(core.vless_port(), id, target, 100, 1000).await,
            "user {id}: exchange through the core\ncore log:\n{}",
            core.log()
        );
    }
    let traffic = |stats: &[xray_core_client::Stat]| {
        let mut named: Vec<(String, i64)> = stats
            .iter()
            .filter(|s| s.name.starts_with("user>>>") && s.name.contains(">>>traffic>>>"))
            .map(|s| (s.name.clone(), s.value))
            .collect();
        named.sort();
        named
    };
    // The downlink counts once the answer went through: wait for all.
    let before = eventually("every user's downlink to count the answer", || async {
        let stats = core.client().query_stats("user>>>", false).await.ok()?;
        let named = traffic(&stats);
        (named.len() == 2 * USERS as usize && named.iter().all(|(_, v)| *v >= 100)).then_some(named)
    })
    .await;
    for (name, value) in before.iter().step_by(37) {
        assert_eq!(
            core.client().get_stat(name, false).await,
            Ok(*value),
            "{name}"
        );
    }

    let mut taken: Vec<xray_core_client::Stat> = Vec::new();
    core.client()
        .query_stats_into("user>>>", true, &mut taken)
        .await
        .unwrap();
    assert_eq!(traffic(&taken), before);
    let after = core.client().query_stats("user>>>", false).await.unwrap();
    assert!(
        traffic(&after).iter().all(|(_, v)| *v == 0),
        "a reset read hands each counter out once"
    );
}
