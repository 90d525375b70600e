use super::*;
use crate::core::ports::PortRange;

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
