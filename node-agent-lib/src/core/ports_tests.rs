use super::*;

fn range(start: u16, end: u16) -> PortRange {
    PortRange::new(start, end).unwrap()
}

#[test]
fn a_users_port_is_its_home_when_free_and_never_moves() {
    let r = range(30000, 30999);
    let map = PortMap::in_memory(r);
    let port = map.assign("alice").unwrap();
    assert_eq!(port, r.home("alice"));
    assert!(r.contains(port));
    assert_eq!(map.assign("alice").unwrap(), port);
    assert_eq!(map.get("alice"), Some(port));
    assert_eq!(map.owner(port).as_deref(), Some("alice"));
}

#[test]
fn a_collision_gives_the_later_user_the_next_free_port_upwards_wrapping() {
    let r = range(100, 102);
    let map = PortMap::in_memory(r);
    let ids: Vec<String> = (0..3).map(|i| format!("user-{i}")).collect();
    let ports: Vec<u16> = ids.iter().map(|id| map.assign(id).unwrap()).collect();
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [100, 101, 102], "three users, three ports");
    // The first user always gets its home; each later one the first free
    // port from its home upwards, wrapping.
    assert_eq!(ports[0], r.home(&ids[0]));
    for (i, id) in ids.iter().enumerate().skip(1) {
        let mut expected = r.home(id);
        while ports[..i].contains(&expected) {
            expected = if expected == r.end {
                r.start
            } else {
                expected + 1
            };
        }
        assert_eq!(ports[i], expected, "{id}");
    }
    assert!(matches!(
        map.assign("one-too-many"),
        Err(PortError::Full(_))
    ));
}

#[test]
fn a_released_port_is_kept_for_its_user_and_given_away_only_when_full() {
    let map = PortMap::in_memory(range(200, 201));
    let a = map.assign("a").unwrap();
    let b = map.assign("b").unwrap();
    map.release("a").unwrap();
    assert_eq!(map.assign("a").unwrap(), a, "a comes back to its port");
    map.release("b").unwrap();
    map.release("a").unwrap();
    // Full of released ports: the longest-released (b) goes first.
    assert_eq!(map.assign("c").unwrap(), b);
    assert_eq!(map.get("b"), None, "b lost its port");
    assert_eq!(map.assign("a").unwrap(), a);
}

#[test]
fn assignments_survive_a_reopen_and_those_outside_a_new_range_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let r = range(40000, 40999);
    let (a, b) = {
        let map = PortMap::open(r, dir.path()).unwrap();
        let a = map.assign("a").unwrap();
        let b = map.assign("b").unwrap();
        map.release("b").unwrap();
        (a, b)
    };
    let again = PortMap::open(r, dir.path()).unwrap();
    assert_eq!(again.get("a"), Some(a));
    assert_eq!(again.get("b"), Some(b));
    let narrowed = PortMap::open(range(a, a), dir.path()).unwrap();
    assert_eq!(narrowed.get("a"), Some(a));
    if b != a {
        assert_eq!(narrowed.get("b"), None);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_damaged_file_is_an_error_not_a_silent_reset() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
    assert!(matches!(
        PortMap::open(range(1000, 2000), dir.path()),
        Err(PortError::File { .. })
    ));
}

#[test]
fn the_exceptions_are_exactly_the_users_away_from_their_home_port() {
    let r = range(100, 101);
    let map = PortMap::in_memory(r);
    assert!(map.exceptions().is_empty());
    // Find two ids with the same home: the later one is an exception.
    let first = "user-0".to_owned();
    let second = (1..)
        .map(|i| format!("user-{i}"))
        .find(|id| r.home(id) == r.home(&first))
        .unwrap();
    let home = map.assign(&first).unwrap();
    let moved = map.assign(&second).unwrap();
    assert_ne!(home, moved);
    assert_eq!(
        map.exceptions().into_iter().collect::<Vec<_>>(),
        [(second.clone(), moved)]
    );
    // A released user keeps its port, so it stays an exception.
    map.release(&second).unwrap();
    assert_eq!(map.exceptions().get(&second), Some(&moved));
}

#[test]
fn descriptions_with_a_range_get_the_exceptions_and_ports_of_skips_the_unknown() {
    use crate::wire::{InboundDescription, InboundProtocol};
    let r = range(100, 101);
    let map = PortMap::in_memory(r);
    let first = "user-0".to_owned();
    let second = (1..)
        .map(|i| format!("user-{i}"))
        .find(|id| r.home(id) == r.home(&first))
        .unwrap();
    let (home, moved) = (map.assign(&first).unwrap(), map.assign(&second).unwrap());
    let mut per_user = InboundDescription::new("ss", InboundProtocol::Shadowsocks, 100);
    per_user.port_range = Some(r);
    let shared = InboundDescription::new("v", InboundProtocol::Vless, 443);
    let mut inbounds = [per_user, shared.clone()];
    map.describe(&mut inbounds);
    assert_eq!(inbounds[0].port_for(&first), home);
    assert_eq!(inbounds[0].port_for(&second), moved);
    assert_eq!(inbounds[1], shared);
    assert_eq!(
        map.ports_of([first.as_str(), "nobody", second.as_str()]),
        BTreeMap::from([(first.clone(), home), (second.clone(), moved)])
    );
}

#[test]
fn a_user_moved_off_a_blocked_port_gets_the_next_and_no_one_gets_the_blocked_one() {
    let r = range(300, 302);
    let map = PortMap::in_memory(r);
    let home = map.assign("a").unwrap();
    let moved = map.move_away("a").unwrap();
    assert_ne!(moved, home);
    assert_eq!(map.get("a"), Some(moved));
    assert_eq!(map.owner(home), None, "nobody holds the blocked port");
    assert_eq!(
        map.exceptions().get("a"),
        Some(&moved),
        "reported away from home"
    );
    // The other ports go to others; the blocked one never, even when the
    // range is otherwise full.
    let b = map.assign("b").unwrap();
    assert!(b != home && b != moved);
    assert!(matches!(map.assign("c"), Err(PortError::Full(_))));
    map.release("b").unwrap();
    assert_eq!(
        map.assign("c").unwrap(),
        b,
        "a released port, not the blocked one"
    );
    // Moving again with every other port taken: no port left.
    assert!(matches!(map.move_away("a"), Err(PortError::Full(_))));
}

#[test]
fn a_move_is_saved_and_blocks_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let r = range(400, 401);
    let map = PortMap::open(r, dir.path()).unwrap();
    let home = map.assign("a").unwrap();
    let moved = map.move_away("a").unwrap();
    drop(map);
    let map = PortMap::open(r, dir.path()).unwrap();
    assert_eq!(map.get("a"), Some(moved), "the move outlives a restart");
    assert_eq!(
        map.assign("b").unwrap(),
        home,
        "after a restart the once-blocked port is free again"
    );
}
