use std::io::Write;

use super::*;

fn user(id: &str, up: u64, down: u64) -> UserUsage {
    UserUsage {
        id: id.into(),
        up,
        down,
    }
}

fn totals(batches: &[UsageBatch]) -> HashMap<String, (u64, u64)> {
    let mut sums = HashMap::new();
    for b in batches {
        for u in &b.users {
            let slot = sums.entry(u.id.clone()).or_insert((0, 0));
            slot.0 += u.up;
            slot.1 += u.down;
        }
    }
    sums
}

fn seqs(r: &UsageResponse) -> Vec<(u64, u64)> {
    r.batches.iter().map(|b| (b.first_seq, b.seq)).collect()
}

#[test]
fn append_then_after_answers_batches_in_order_after_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(j.append(10, 15, &[user("a", 1, 2)]).unwrap(), Some(1));
    assert_eq!(j.append(15, 20, &[user("b", 3, 4)]).unwrap(), Some(2));
    assert_eq!(j.append(20, 25, &[]).unwrap(), None, "no users, no batch");
    let id = j.id().to_owned();

    let all = j.after(None, 0, 64).unwrap();
    assert_eq!(all.journal, id);
    assert_eq!(seqs(&all), vec![(1, 1), (2, 2)]);
    assert_eq!(all.batches[0].users, vec![user("a", 1, 2)]);
    assert_eq!((all.batches[1].from, all.batches[1].to), (15, 20));
    assert!(!all.more);

    let page = j.after(Some(&id), 0, 1).unwrap();
    assert_eq!(seqs(&page), vec![(1, 1)]);
    assert!(page.more);
    assert_eq!(j.after(Some(&id), 2, 64).unwrap().batches, vec![]);
}

#[test]
fn a_repeated_pull_answers_the_same_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &[user("a", 5, 6)]).unwrap();
    let id = j.id().to_owned();
    let first = j.after(Some(&id), 0, 64).unwrap();
    let again = j.after(Some(&id), 0, 64).unwrap();
    assert_eq!(first, again);
}

#[test]
fn confirmed_batches_are_forgotten_and_the_file_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    for i in 0..10 {
        j.append(i, i + 1, &[user("a", 100, 200)]).unwrap();
    }
    let id = j.id().to_owned();
    let full = j.bytes();
    let r = j.after(Some(&id), 8, 64).unwrap();
    assert_eq!(seqs(&r), vec![(9, 9), (10, 10)]);
    assert_eq!(j.len(), 2);
    assert!(j.bytes() < full / 2, "{} of {full}", j.bytes());
    // Sequence numbers go on after the reclaim, also across a reopen.
    assert_eq!(j.append(0, 1, &[user("b", 1, 1)]).unwrap(), Some(11));
    drop(j);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    let r = j.after(Some(&id), 10, 64).unwrap();
    assert_eq!(seqs(&r), vec![(11, 11)]);
    j.after(Some(&id), 11, 64).unwrap();
    assert!(j.is_empty());
    drop(j);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(j.append(0, 1, &[user("c", 1, 1)]).unwrap(), Some(12));
}

#[test]
fn another_journal_id_or_none_answers_from_the_first_batch_and_confirms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &[user("a", 1, 1)]).unwrap();
    j.append(1, 2, &[user("a", 1, 1)]).unwrap();
    let r = j.after(Some("someone-else"), 2, 64).unwrap();
    assert_eq!(seqs(&r), vec![(1, 1), (2, 2)]);
    assert_eq!(j.len(), 2, "a foreign cursor confirms nothing");
    let r = j.after(None, 5, 64).unwrap();
    assert_eq!(seqs(&r), vec![(1, 1), (2, 2)]);
}

#[test]
fn a_new_journal_gets_a_new_id() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ja = Journal::open(a.path(), 720).unwrap();
    let jb = Journal::open(b.path(), 720).unwrap();
    assert_ne!(ja.id(), jb.id());
    assert!(uuid::Uuid::parse_str(ja.id()).is_ok());
}

#[test]
fn reopening_keeps_id_batches_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(3, 4, &[user("a", 1, 2), user("b", u64::MAX, 0)])
        .unwrap();
    j.append(4, 5, &[user("a", 7, 8)]).unwrap();
    let id = j.id().to_owned();
    let before = j.after(None, 0, 64).unwrap();
    drop(j);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(j.id(), id);
    assert_eq!(j.after(None, 0, 64).unwrap(), before);
}

#[test]
fn merging_keeps_exact_sums_and_stays_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let max = 8;
    let mut j = Journal::open(dir.path(), max).unwrap();
    let mut expected: HashMap<String, (u64, u64)> = HashMap::new();
    for i in 0..50u64 {
        let users = vec![user("a", i, 2 * i), user(&format!("u{}", i % 3), 1, 1)];
        for u in &users {
            let slot = expected.entry(u.id.clone()).or_insert((0, 0));
            slot.0 += u.up;
            slot.1 += u.down;
        }
        j.append(i as i64, i as i64 + 1, &users).unwrap();
        assert!(j.len() <= max, "{} batches", j.len());
    }
    let r = j.after(None, 0, 256).unwrap();
    assert_eq!(totals(&r.batches), expected);
    // Contiguous, covering 1..=50, time attribution spanning the merged reads.
    let mut next = 1;
    for b in &r.batches {
        assert_eq!(b.first_seq, next);
        next = b.seq + 1;
    }
    assert_eq!(next, 51);
    assert_eq!((r.batches[0].from, r.batches.last().unwrap().to), (0, 50));
}

#[test]
fn merging_never_touches_a_delivered_batch() {
    let dir = tempfile::tempdir().unwrap();
    let max = 4;
    let mut j = Journal::open(dir.path(), max).unwrap();
    for i in 0..3 {
        j.append(i, i + 1, &[user("a", 1, 0)]).unwrap();
    }
    let id = j.id().to_owned();
    let delivered = j.after(Some(&id), 0, 2).unwrap();
    assert_eq!(seqs(&delivered), vec![(1, 1), (2, 2)]);
    for i in 3..40 {
        j.append(i, i + 1, &[user("a", 1, 0)]).unwrap();
    }
    // The delivered batches are still there as they were answered: a
    // manager that stored them and pulls again with after=2 loses nothing
    // and counts nothing twice.
    let again = j.after(Some(&id), 0, 2).unwrap();
    assert_eq!(again, delivered);
    let rest = j.after(Some(&id), 2, 256).unwrap();
    assert_eq!(rest.batches[0].first_seq, 3);
    let total: u64 = rest
        .batches
        .iter()
        .flat_map(|b| &b.users)
        .map(|u| u.up)
        .sum();
    assert_eq!(total, 40 - 2);
}

#[test]
fn after_a_reopen_every_batch_counts_as_delivered_and_is_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 2).unwrap();
    j.append(0, 1, &[user("a", 1, 0)]).unwrap();
    j.append(1, 2, &[user("a", 1, 0)]).unwrap();
    drop(j);
    let mut j = Journal::open(dir.path(), 2).unwrap();
    for i in 2..10 {
        j.append(i, i + 1, &[user("a", 1, 0)]).unwrap();
    }
    let r = j.after(None, 0, 256).unwrap();
    assert_eq!(&seqs(&r)[..2], &[(1, 1), (2, 2)]);
    assert_eq!(totals(&r.batches)["a"], (10, 0));
}

#[test]
fn a_torn_last_record_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &[user("a", 1, 2)]).unwrap();
    j.append(1, 2, &[user("a", 3, 4)]).unwrap();
    let whole = j.bytes();
    drop(j);
    let path = dir.path().join(FILE_NAME);
    // A crash in the middle of the third append: part of its record.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .unwrap();
    drop(f);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(j.len(), 2);
    assert_eq!(j.bytes(), whole);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
    assert_eq!(j.append(2, 3, &[user("a", 5, 6)]).unwrap(), Some(3));
    drop(j);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(totals(&j.after(None, 0, 64).unwrap().batches)["a"], (9, 12));
}

#[test]
fn a_whole_length_record_with_a_bad_checksum_at_the_end_is_torn_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &[user("a", 1, 2)]).unwrap();
    let good = j.bytes();
    j.append(1, 2, &[user("a", 3, 4)]).unwrap();
    drop(j);
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!((j.len(), j.bytes()), (1, good));
}

#[test]
fn damage_before_the_last_record_refuses_to_open_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    let header = j.bytes();
    j.append(0, 1, &[user("a", 1, 2)]).unwrap();
    j.append(1, 2, &[user("a", 3, 4)]).unwrap();
    drop(j);
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[header as usize + 10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = Journal::open(dir.path(), 720).unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn after_never_answers_more_than_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    for i in 0..20 {
        j.append(i, i + 1, &[user("a", 1, 1)]).unwrap();
    }
    let r = j.after(None, 0, 7).unwrap();
    assert_eq!(r.batches.len(), 7);
    assert!(r.more);
    let r = j.after(None, 0, 0).unwrap();
    assert_eq!(r.batches.len(), 1, "0 is read as 1, so a pull always moves");
}

#[test]
fn a_page_stops_at_the_byte_budget_but_always_answers_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    // ~3.3 MiB per batch: 45,000 users of ~75 bytes.
    let users: Vec<UserUsage> = (0..45_000)
        .map(|i| user(&format!("{i:08x}-0000-4000-8000-000000000000"), i, i))
        .collect();
    for i in 0..8 {
        j.append(i, i + 1, &users).unwrap();
    }
    let page = j.after(None, 0, 256).unwrap();
    let per_batch = j.bytes() / 8;
    assert_eq!(
        page.batches.len() as u64,
        USAGE_PAGE_BYTES / per_batch,
        "{per_batch} bytes a batch"
    );
    assert!(page.more);
    let sealed = serde_json::to_vec(&page).unwrap().len() * 4 / 3;
    assert!(sealed < crate::client::MAX_USAGE_ANSWER, "{sealed}");
    // A batch larger than the budget on its own still comes, alone.
    let big: Vec<UserUsage> = (0..250_000)
        .map(|i| user(&format!("{i:08x}-0000-4000-8000-000000000001"), 1, 1))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &big).unwrap();
    j.append(1, 2, &big).unwrap();
    let page = j.after(None, 0, 256).unwrap();
    assert_eq!(page.batches.len(), 1);
    assert!(page.more);
}

#[test]
fn a_failed_merge_still_counts_the_appended_batch_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 2).unwrap();
    j.append(0, 1, &[user("a", 1, 0)]).unwrap();
    j.append(1, 2, &[user("a", 1, 0)]).unwrap();
    j.fail_next_rewrite = true;
    assert_eq!(j.append(2, 3, &[user("a", 1, 0)]).unwrap(), Some(3));
    assert_eq!(j.len(), 3, "over the cap until a merge works");
    j.append(3, 4, &[user("a", 1, 0)]).unwrap();
    assert!(j.len() <= 2);
    let r = j.after(None, 0, 64).unwrap();
    assert_eq!(totals(&r.batches)["a"], (4, 0));
}

#[test]
fn a_failed_append_is_cut_off_and_the_next_one_lands_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &[user("a", 1, 0)]).unwrap();
    j.fail_next_append = true;
    assert!(j.append(1, 2, &[user("a", 10, 0)]).is_err());
    assert_eq!(j.append(1, 2, &[user("a", 100, 0)]).unwrap(), Some(2));
    drop(j);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    let r = j.after(None, 0, 64).unwrap();
    assert_eq!(seqs(&r), vec![(1, 1), (2, 2)]);
    assert_eq!(totals(&r.batches)["a"], (101, 0));
}

#[test]
fn a_journal_restored_from_an_older_backup_numbers_after_the_managers_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(j.append(0, 1, &[user("a", 1, 1)]).unwrap(), Some(1));
    let backup = std::fs::read(&path).unwrap();
    j.append(1, 2, &[user("a", 2, 2)]).unwrap();
    j.append(2, 3, &[user("b", 4, 4)]).unwrap();
    let id = j.id().to_owned();
    // The manager stores all three: its cursor is 3.
    assert_eq!(
        seqs(&j.after(Some(&id), 0, 64).unwrap()),
        [(1, 1), (2, 2), (3, 3)]
    );
    drop(j);

    std::fs::write(&path, &backup).unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!((j.id(), j.last_seq(), j.len()), (id.as_str(), 1, 1));
    // The manager's pull names its cursor: nothing it counted comes back.
    let page = j.after(Some(&id), 3, 64).unwrap();
    assert!(page.batches.is_empty(), "{page:?}");
    assert_eq!(j.last_seq(), 3);
    // An agent killed right after keeps the new numbering.
    drop(j);
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!((j.last_seq(), j.len()), (3, 0));

    assert_eq!(j.append(3, 4, &[user("a", 8, 9)]).unwrap(), Some(4));
    let page = j.after(Some(&id), 3, 64).unwrap();
    assert_eq!(seqs(&page), [(4, 4)]);
    assert_eq!(totals(&page.batches), HashMap::from([("a".into(), (8, 9))]));
    // Stored and confirmed: exactly once.
    assert!(j.after(Some(&id), 4, 64).unwrap().batches.is_empty());
    assert!(j.after(Some(&id), 4, 64).unwrap().batches.is_empty());
    assert!(j.is_empty());
}

#[test]
fn a_failed_renumbering_changes_nothing_and_the_next_pull_does_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    let id = j.id().to_owned();
    j.fail_next_rewrite = true;
    assert!(j.after(Some(&id), 5, 64).is_err());
    assert_eq!(j.last_seq(), 0);
    assert!(j.after(Some(&id), 5, 64).unwrap().batches.is_empty());
    assert_eq!(j.append(0, 1, &[user("a", 1, 1)]).unwrap(), Some(6));
}

/// Adds what `users` read to `expected` (the ground truth a test keeps).
fn read_into(expected: &mut HashMap<String, (u64, u64)>, users: &[UserUsage]) {
    for u in users {
        let slot = expected.entry(u.id.clone()).or_insert((0, 0));
        slot.0 += u.up;
        slot.1 += u.down;
    }
}

fn lifetime_of(dir: &Path) -> HashMap<String, (u64, u64)> {
    crate::usage::read_lifetime_totals(dir)
        .unwrap()
        .expect("a journal")
        .all()
        .into_iter()
        .collect()
}

#[test]
fn lifetime_totals_keep_every_batch_across_confirms_rewrites_merges_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 4).unwrap();
    let id = j.id().to_owned();
    let mut expected = HashMap::new();
    let mut confirmed = 0;
    for i in 0..60u64 {
        let users = vec![user("a", i, 2 * i), user(&format!("u{}", i % 5), 3, 1)];
        read_into(&mut expected, &users);
        j.append(i as i64, i as i64 + 1, &users).unwrap();
        // A manager that confirms now and then, and is away in between
        // (merges), with a restart of the agent every 17 reads.
        if i % 7 == 3 {
            let r = j.after(Some(&id), confirmed, 2).unwrap();
            if let Some(last) = r.batches.last() {
                confirmed = last.seq;
            }
        }
        if i % 17 == 16 {
            drop(j);
            j = Journal::open(dir.path(), 4).unwrap();
        }
        let totals = j.lifetime_totals().unwrap();
        assert_eq!(
            (totals.journal.as_str(), totals.last_seq),
            (id.as_str(), i + 1)
        );
        assert_eq!(
            totals.all().into_iter().collect::<HashMap<_, _>>(),
            expected,
            "after read {i}"
        );
        assert_eq!(
            lifetime_of(dir.path()),
            expected,
            "read-only, after read {i}"
        );
    }
    // Everything confirmed: the file holds no batch, the header all of it.
    j.after(Some(&id), j.last_seq(), 64).unwrap();
    j.after(Some(&id), j.last_seq(), 64).unwrap();
    assert!(j.is_empty());
    let totals = crate::usage::read_lifetime_totals(dir.path())
        .unwrap()
        .unwrap();
    assert!(totals.forgotten.values().any(|&(up, _)| up > 0));
    assert_eq!(
        totals.all().into_iter().collect::<HashMap<_, _>>(),
        expected
    );
}

#[test]
fn lifetime_totals_survive_a_crash_at_any_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    let id = j.id().to_owned();
    let mut expected = HashMap::new();
    for i in 0..6 {
        let users = [user("a", 10, 20), user("b", i, 1)];
        read_into(&mut expected, &users);
        j.append(i as i64, i as i64 + 1, &users).unwrap();
    }
    j.after(Some(&id), 5, 64).unwrap(); // confirms 5 of 6: rewritten
    // A crash in the middle of the next append: not taken, not counted.
    j.fail_next_append = true;
    assert!(j.append(6, 7, &[user("a", 1000, 1000)]).is_err());
    // A crash in the middle of a rewrite leaves the old file as it was
    // (and its temporary file, never renamed over).
    let torn = dir.path().join(".usage.journal.crashed");
    std::fs::write(&torn, b"half a rewrite").unwrap();
    assert_eq!(
        lifetime_of(dir.path()),
        expected,
        "read while the agent holds it"
    );
    std::mem::forget(j); // no orderly close
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(j.id(), id);
    assert_eq!(j.len(), 1, "the torn append is dropped at open");
    let totals = j.lifetime_totals().unwrap();
    assert_eq!(totals.forgotten["a"], (50, 100));
    assert_eq!(totals.outstanding["a"], (10, 20));
    assert_eq!(
        totals.all().into_iter().collect::<HashMap<_, _>>(),
        expected
    );
    let users = [user("c", 7, 7)];
    read_into(&mut expected, &users);
    j.append(7, 8, &users).unwrap();
    j.after(Some(&id), j.last_seq(), 64).unwrap();
    drop(j);
    assert_eq!(lifetime_of(dir.path()), expected);
}

#[test]
fn reading_lifetime_totals_needs_a_journal_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("never-started");
    assert_eq!(crate::usage::read_lifetime_totals(&missing).unwrap(), None);
    assert!(!missing.exists(), "a read creates nothing");
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &[user("a", 1, 2)]).unwrap();
    drop(j);
    let path = dir.path().join(FILE_NAME);
    // An append cut short at the end is left out, and left in the file.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
    drop(f);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(lifetime_of(dir.path())["a"], (1, 2));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn a_header_from_before_lifetime_totals_opens_with_nothing_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let header = encode(&serde_json::json!({"header": {"journal": "j-1", "lastSeq": 4}})).unwrap();
    std::fs::write(dir.path().join(FILE_NAME), header).unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    assert_eq!(j.append(0, 1, &[user("a", 1, 1)]).unwrap(), Some(5));
    let totals = j.lifetime_totals().unwrap();
    assert_eq!(
        (totals.journal.as_str(), totals.forgotten.len()),
        ("j-1", 0)
    );
    j.after(Some("j-1"), 5, 64).unwrap();
    assert_eq!(lifetime_of(dir.path())["a"], (1, 1));
}

#[test]
fn the_json_page_is_the_page_as_the_wire_type_serialises_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 4).unwrap();
    let a = "0b5e8f1c-5a7e-4c2b-9d3f-00000000000a";
    let sums: UserSums = [(a.parse().unwrap(), 7, u64::MAX)].into_iter().collect();
    assert_eq!(j.append_sums(1, 2, &sums).unwrap(), Some(1));
    assert_eq!(j.append_sums(2, 3, &UserSums::default()).unwrap(), None);
    let first = j.after(None, 0, 1).unwrap();
    assert_eq!(first.batches[0].users, sums.to_users());
    for i in 0..6 {
        j.append(3 + i, 4 + i, &[user("b\"\\é", i as u64, 1)])
            .unwrap();
    }
    let id = j.id().to_owned();
    // A merged batch, a page cut by `max` (`more`), and the rest.
    for (journal, after, max) in [(None, 0, 64), (Some(id.as_str()), 0, 2), (Some(&id), 1, 64)] {
        let json = j.after_json(journal, after, max).unwrap();
        let want = j.after(journal, after, max).unwrap();
        let got: UsageResponse = serde_json::from_slice(&json).unwrap();
        assert_eq!(got, want);
        assert_eq!(json, serde_json::to_vec(&want).unwrap());
    }
    assert!(
        j.after(None, 0, 64)
            .unwrap()
            .batches
            .iter()
            .any(|b| b.first_seq < b.seq),
        "a merged batch was on the page"
    );
}

#[test]
fn a_json_page_of_a_damaged_batch_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(dir.path(), 720).unwrap();
    j.append(0, 1, &[user("a", 5, 6)]).unwrap();
    j.append(1, 2, &[user("b", 5, 6)]).unwrap();
    let path = dir.path().join(FILE_NAME);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        j.after_json(None, 0, 64),
        Err(JournalError::Corrupt { .. })
    ));
}
