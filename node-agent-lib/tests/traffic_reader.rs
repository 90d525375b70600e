//! The usage collector's read of a real core (Debian's v2ray, or
//! `$V2RAY_BIN`) through `CoreClient`'s [`TrafficReader`]: every user's
//! bytes are taken exactly once, with the values the core showed, while
//! traffic runs too. Without a core binary the tests are skipped, except
//! with `CI=true` where `v2ray_binary()` fails them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use node_agent_lib::usage::{TrafficReader, UserSums};
use uuid::Uuid;
use xray_core_client::testing::{
    TestCore, serve_exchange, vless_exchange, vless_user, vless_user_with_id,
};

/// Bytes each connection sends and gets back.
const SENT: usize = 100;
const ANSWERED: usize = 1000;
/// Users per first character of their id: every one of the sixteen.
const PER_FIRST_CHAR: u128 = 6;
const DEADLINE: Duration = Duration::from_secs(20);

/// Ids beginning with each hex character (a read split by first character
/// must miss none), the rest spread as random ids are.
fn ids() -> Vec<Uuid> {
    (0..16 * PER_FIRST_CHAR)
        .map(|i| {
            let spread = (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
            Uuid::from_u128(((i % 16) << 124) | (spread >> 4))
        })
        .collect()
}

/// One exchange of every user in `ids`, all at once.
async fn exchange_all(core: &TestCore, ids: &[Uuid], target: std::net::SocketAddr) {
    let port = core.vless_port();
    let failed = futures::stream::iter(ids.iter().copied())
        .map(|id| async move { vless_exchange(port, &id, target, SENT, ANSWERED).await })
        .buffer_unordered(32)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    assert_eq!(failed, 0, "exchanges through the core\n{}", core.log());
}

/// `(up, down)` per user id, from the core's own counters (no reset).
async fn core_view(core: &TestCore) -> BTreeMap<Uuid, (u64, u64)> {
    let mut view = BTreeMap::new();
    for stat in core.client().query_stats("user>>>", false).await.unwrap() {
        let Some(rest) = stat.name.strip_prefix("user>>>") else {
            continue;
        };
        let Some((email, dir)) = rest.split_once(">>>traffic>>>") else {
            continue;
        };
        let Ok(id) = email.parse::<Uuid>() else {
            continue;
        };
        let slot: &mut (u64, u64) = view.entry(id).or_default();
        let value = u64::try_from(stat.value).unwrap();
        match dir {
            "uplink" => slot.0 += value,
            "downlink" => slot.1 += value,
            other => panic!("counter {other}"),
        }
    }
    view
}

fn as_map(sums: &UserSums) -> BTreeMap<Uuid, (u64, u64)> {
    sums.iter().map(|(id, up, down)| (id, (up, down))).collect()
}

async fn start(ids: &[Uuid]) -> Option<(TestCore, Uuid)> {
    let mut users: Vec<_> = ids
        .iter()
        .map(|id| vless_user_with_id(&id.to_string()))
        .collect();
    // The operator's own client: its email is no user id.
    let own = vless_user("admin@example.com");
    let own_id = match &own.account {
        xray_core_client::Account::Vless { id, .. } => id.parse().unwrap(),
        other => panic!("{other:?}"),
    };
    users.push(own);
    Some((TestCore::start(&users).await?, own_id))
}

/// Every user's counters read once, with the values the core showed, and
/// zeroed; the operator's own client never in the sums.
#[tokio::test]
async fn a_read_takes_every_users_counters_once_with_the_cores_values() {
    let ids = ids();
    let Some((core, own)) = start(&ids).await else {
        return;
    };
    let (target, _server) = serve_exchange(SENT, ANSWERED).await;
    let mut everyone = ids.clone();
    everyone.push(own);
    exchange_all(&core, &everyone, target).await;
    // The downlink counts once the answer went through: wait for all.
    let deadline = Instant::now() + DEADLINE;
    let before = loop {
        let view = core_view(&core).await;
        // The operator's client is no user id: not in the view.
        if view.len() == ids.len() && view.values().all(|(_, d)| *d >= ANSWERED as u64) {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "counters never settled: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let mut sums = UserSums::default();
    core.client()
        .take_user_traffic_into(&mut sums)
        .await
        .unwrap();
    assert_eq!(as_map(&sums), before);
    let after = core_view(&core).await;
    assert!(
        ids.iter().all(|id| after[id] == (0, 0)),
        "every user's counters are zeroed: {after:?}"
    );

    let mut again = UserSums::default();
    core.client()
        .take_user_traffic_into(&mut again)
        .await
        .unwrap();
    assert!(again.is_empty(), "nothing moved since: {again:?}");
}

/// Reads in a loop while every user makes `ROUNDS` exchanges: their sums
/// add up to exactly what the exchanges moved, user by user (each exchange
/// of every user counts the same, measured by a first round read alone).
#[tokio::test]
async fn reads_during_traffic_neither_lose_nor_double_count_a_byte() {
    const ROUNDS: u64 = 4;
    let ids = ids();
    let Some((core, _own)) = start(&ids).await else {
        return;
    };
    let (target, _server) = serve_exchange(SENT, ANSWERED).await;

    // One exchange each, read alone: what one exchange counts.
    exchange_all(&core, &ids, target).await;
    let deadline = Instant::now() + DEADLINE;
    let mut first = UserSums::default();
    let one = loop {
        core.client()
            .take_user_traffic_into(&mut first)
            .await
            .unwrap();
        let map = as_map(&first);
        if map.len() == ids.len() && map.values().all(|(_, d)| *d >= ANSWERED as u64) {
            let one = map[&ids[0]];
            assert!(map.values().all(|v| *v == one), "{map:?}");
            break one;
        }
        assert!(Instant::now() < deadline, "counters never settled: {map:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let expected = (one.0 * ROUNDS, one.1 * ROUNDS);

    let stop = tokio_util::sync::CancellationToken::new();
    let reader = {
        let (client, stop) = (core.client().clone(), stop.clone());
        tokio::spawn(async move {
            let (mut total, mut reads) = (UserSums::default(), 0);
            while !stop.is_cancelled() {
                client.take_user_traffic_into(&mut total).await.unwrap();
                reads += 1;
            }
            (total, reads)
        })
    };
    for _ in 0..ROUNDS {
        exchange_all(&core, &ids, target).await;
    }
    stop.cancel();
    let (mut total, reads) = reader.await.unwrap();
    assert!(reads > 1, "reads ran during the traffic");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let map = as_map(&total);
        assert!(
            map.values()
                .all(|(u, d)| *u <= expected.0 && *d <= expected.1),
            "counted twice: {map:?} over {expected:?}"
        );
        if map.len() == ids.len() && map.values().all(|v| *v == expected) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bytes lost: {map:?} under {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        core.client()
            .take_user_traffic_into(&mut total)
            .await
            .unwrap();
    }
}
