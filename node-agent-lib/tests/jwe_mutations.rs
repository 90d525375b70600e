//! Property test over mutated JWE tokens: take a token the node would accept,
//! change it in any one way an attacker or a broken proxy could (a flipped,
//! inserted or dropped byte in any of the five segments, a segment dropped,
//! added or swapped, the text cut short or spliced), and the node answers a
//! bare 401 `{"error":"unauthorized"}` — and neither the service manager nor
//! the core sees a call (the mocks have no expectations and panic if called).
//! A control case checks that the unmutated token is accepted, so the
//! property cannot pass by rejecting everything. The same mutations of a
//! node's sealed answer never open on the manager's side.

mod common;

use std::time::SystemTime;

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use node_agent_lib::envelope;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Routes with the method the token is sealed for, and a body the route
/// would accept if the token were good.
const ROUTES: &[(&str, &str, &[u8])] = &[
    ("POST", "/start", b"{\"users\":[]}"),
    ("POST", "/stop", b""),
    ("GET", "/status", b""),
    ("POST", "/users/edit", b"{\"add\":[],\"remove\":[]}"),
];

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte of a decoded segment with a non-zero mask.
    Flip { segment: usize, at: usize, mask: u8 },
    /// Insert a byte into a decoded segment.
    Insert { segment: usize, at: usize, byte: u8 },
    /// Remove one byte from a decoded segment (if it has any).
    Remove { segment: usize, at: usize },
    /// Replace a whole segment with random bytes.
    Replace { segment: usize, bytes: Vec<u8> },
    /// Drop a segment, leaving four.
    DropSegment { segment: usize },
    /// Add a sixth segment.
    AddSegment { bytes: Vec<u8> },
    /// Swap two different segments.
    Swap { a: usize, b: usize },
    /// Cut the token's text short.
    Truncate { keep: usize },
    /// Put one character into the text (base64url alphabet, dot, or junk).
    Splice { at: usize, ch: char },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0..5usize, any::<usize>(), 1..=255u8).prop_map(|(segment, at, mask)| Mutation::Flip {
            segment,
            at,
            mask
        }),
        (0..5usize, any::<usize>(), any::<u8>()).prop_map(|(segment, at, byte)| Mutation::Insert {
            segment,
            at,
            byte
        }),
        (0..5usize, any::<usize>()).prop_map(|(segment, at)| Mutation::Remove { segment, at }),
        (0..5usize, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(segment, bytes)| Mutation::Replace { segment, bytes }),
        (0..5usize).prop_map(|segment| Mutation::DropSegment { segment }),
        proptest::collection::vec(any::<u8>(), 0..32)
            .prop_map(|bytes| Mutation::AddSegment { bytes }),
        (0..5usize, 1..5usize).prop_map(|(a, d)| Mutation::Swap { a, b: (a + d) % 5 }),
        any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        (
            any::<usize>(),
            prop_oneof![
                Just('.'),
                Just('='),
                Just(' '),
                Just('%'),
                Just('é'),
                proptest::char::range('A', 'Z'),
                proptest::char::range('a', 'z'),
                proptest::char::range('0', '9'),
                Just('-'),
                Just('_'),
            ]
        )
            .prop_map(|(at, ch)| Mutation::Splice { at, ch }),
    ]
}

/// The token with `m` applied, or `None` where `m` would leave it unchanged
/// (removing from an empty segment, a flip that decodes to the same bytes).
fn apply(token: &str, m: &Mutation) -> Option<String> {
    let mut segments: Vec<Vec<u8>> = token
        .split('.')
        .map(|s| {
            URL_SAFE_NO_PAD
                .decode(s)
                .expect("a sealed token is base64url")
        })
        .collect();
    assert_eq!(segments.len(), 5, "compact JWE has five segments");
    let encode = |segments: &[Vec<u8>]| {
        segments
            .iter()
            .map(|s| URL_SAFE_NO_PAD.encode(s))
            .collect::<Vec<_>>()
            .join(".")
    };
    let mutated = match m {
        Mutation::Flip { segment, at, mask } => {
            let s = &mut segments[*segment];
            if s.is_empty() {
                return None;
            }
            let i = at % s.len();
            s[i] ^= mask;
            encode(&segments)
        }
        Mutation::Insert { segment, at, byte } => {
            let s = &mut segments[*segment];
            let i = at % (s.len() + 1);
            s.insert(i, *byte);
            encode(&segments)
        }
        Mutation::Remove { segment, at } => {
            let s = &mut segments[*segment];
            if s.is_empty() {
                return None;
            }
            let i = at % s.len();
            s.remove(i);
            encode(&segments)
        }
        Mutation::Replace { segment, bytes } => {
            segments[*segment] = bytes.clone();
            encode(&segments)
        }
        Mutation::DropSegment { segment } => {
            segments.remove(*segment);
            encode(&segments)
        }
        Mutation::AddSegment { bytes } => {
            segments.push(bytes.clone());
            encode(&segments)
        }
        Mutation::Swap { a, b } => {
            segments.swap(*a, *b);
            encode(&segments)
        }
        Mutation::Truncate { keep } => token[..keep % token.len()].to_owned(),
        Mutation::Splice { at, ch } => {
            let mut text = token.to_owned();
            text.insert(at % (token.len() + 1), *ch);
            // A character that lands in a segment's unused trailing bits may
            // decode to the same bytes; that is the same token, not a forgery.
            // Whitespace around the token is not part of it (both ends
            // trim it), so a space at either end is the same token too.
            let same = text.trim() == token
                || text.split('.').count() == 5
                    && text
                        .split('.')
                        .map(|s| URL_SAFE_NO_PAD.decode(s).ok())
                        .collect::<Option<Vec<_>>>()
                        .is_some_and(|d| d == segments);
            if same {
                return None;
            }
            text
        }
    };
    (mutated != token).then_some(mutated)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_token_is_a_bare_401_and_reaches_nothing(
        route in 0..ROUTES.len(),
        m in mutation(),
    ) {
        let (method, path, body) = ROUTES[route];
        let node = untouchable();
        let sealed = envelope::seal_request(&node.key, method, path, body, SystemTime::now()).unwrap();
        let Some(token) = apply(&sealed.token, &m) else {
            return Err(TestCaseError::reject("the mutation leaves the token unchanged"));
        };
        let (status, answer) = runtime().block_on(send(&node.router, request_with_token(method, path, &token)));
        prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "mutation {:?} was accepted", m);
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        prop_assert_eq!(answer, json!({"error": "unauthorized"}));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The other direction: the manager opening a node's answer. A mutated
    /// answer is an error (never a panic, never a payload).
    #[test]
    fn a_mutated_answer_does_not_open(m in mutation()) {
        let key = envelope::NodeKey::random();
        let rid = "AAAAAAAAAAAAAAAAAAAAAA";
        let sealed = envelope::seal_response(&key, rid, 200, b"{\"users\":3}").unwrap();
        prop_assert!(envelope::open_response(&key, &sealed, rid, 200).is_ok());
        let Some(token) = apply(&sealed, &m) else {
            return Err(TestCaseError::reject("the mutation leaves the token unchanged"));
        };
        prop_assert!(envelope::open_response(&key, &token, rid, 200).is_err(), "mutation {:?} opened", m);
    }
}

/// The control: the same token, unmutated, is accepted, so the property
/// above is not passing because the test's tokens are bad to begin with.
#[test]
fn the_unmutated_token_is_accepted() {
    let node = answering_one_status();
    let sealed =
        envelope::seal_request(&node.key, "GET", "/status", b"", SystemTime::now()).unwrap();
    let (status, _) = runtime().block_on(send(
        &node.router,
        request_with_token("GET", "/status", &sealed.token),
    ));
    assert_eq!(status, StatusCode::OK);
    // And the re-encoding the mutations go through is lossless.
    let reencoded = apply(
        &sealed.token,
        &Mutation::Swap { a: 1, b: 1 }, // swapping a segment with itself
    );
    assert_eq!(reencoded, None, "re-encoding alone changes nothing");
}
