use super::*;

fn stat(name: &str, value: i64) -> proto::Stat {
    proto::Stat {
        name: name.into(),
        value,
    }
}

/// `message` framed as a unary gRPC answer (flag byte, length, bytes).
fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

fn answer(stats: &[proto::Stat]) -> Vec<u8> {
    framed(
        &proto::QueryStatsResponse {
            stat: stats.to_vec(),
        }
        .encode_to_vec(),
    )
}

/// What the parser hands out for `bytes` cut into chunks of `size`.
fn parse_in_chunks(bytes: &[u8], size: usize) -> Result<Vec<Stat>, Status> {
    let mut parser = AnswerParser::new(1 << 20);
    let mut got = Vec::new();
    for chunk in bytes.chunks(size.max(1)) {
        parser.feed(Bytes::copy_from_slice(chunk), &mut got)?;
    }
    parser.finish()?;
    Ok(got)
}

fn as_stats(stats: &[proto::Stat]) -> Vec<Stat> {
    stats
        .iter()
        .map(|s| Stat {
            name: s.name.clone(),
            value: s.value,
        })
        .collect()
}

#[test]
fn every_counter_comes_out_whatever_the_chunks() {
    let long = "x".repeat(300);
    let stats = vec![
        stat("user>>>a>>>traffic>>>uplink", 10),
        stat("", 0),
        stat(&long, i64::MAX),
        stat("user>>>b>>>traffic>>>downlink", i64::MIN),
    ];
    let bytes = answer(&stats);
    for size in 1..=bytes.len() {
        assert_eq!(
            parse_in_chunks(&bytes, size).unwrap(),
            as_stats(&stats),
            "chunks of {size}"
        );
    }
}

#[test]
fn an_empty_answer_has_no_counters() {
    assert_eq!(parse_in_chunks(&answer(&[]), 3).unwrap(), vec![]);
}

#[test]
fn unknown_fields_are_skipped() {
    // Field 2 (varint 7), the stat, field 3 (bytes "xyz"), field 4 (fixed64).
    let mut message = vec![0x10, 7];
    message.extend(
        proto::QueryStatsResponse {
            stat: vec![stat("n", 5)],
        }
        .encode_to_vec(),
    );
    message.extend([0x1a, 3, b'x', b'y', b'z']);
    message.extend([0x21, 1, 2, 3, 4, 5, 6, 7, 8]);
    let bytes = framed(&message);
    for size in 1..=bytes.len() {
        assert_eq!(
            parse_in_chunks(&bytes, size).unwrap(),
            vec![Stat {
                name: "n".into(),
                value: 5
            }]
        );
    }
}

#[test]
fn a_cut_answer_is_an_error_after_what_came_whole() {
    let bytes = answer(&[stat("a", 1), stat("b", 2)]);
    let mut parser = AnswerParser::new(1 << 20);
    let mut got = Vec::new();
    parser
        .feed(Bytes::copy_from_slice(&bytes[..bytes.len() - 2]), &mut got)
        .unwrap();
    assert!(parser.finish().is_err());
    assert_eq!(
        got,
        vec![Stat {
            name: "a".into(),
            value: 1
        }]
    );
    assert!(
        AnswerParser::new(1 << 20).finish().is_err(),
        "no message at all"
    );
}

#[test]
fn malformed_answers_are_errors() {
    // Compressed.
    let mut compressed = answer(&[stat("a", 1)]);
    compressed[0] = 1;
    assert!(parse_in_chunks(&compressed, 64).is_err());
    // A name that is not UTF-8.
    assert!(parse_in_chunks(&framed(&[0x0a, 3, 0x0a, 1, 0xff]), 64).is_err());
    // A field longer than the message.
    assert!(parse_in_chunks(&framed(&[0x0a, 9, 0x0a, 1, b'a']), 64).is_err());
    // Two messages in a unary answer.
    let mut two = answer(&[stat("a", 1)]);
    two.extend(answer(&[stat("b", 1)]));
    assert!(parse_in_chunks(&two, 64).is_err());
    // Larger than the client accepts.
    let mut huge = vec![0u8];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(parse_in_chunks(&huge, 64).is_err());
}

#[test]
fn a_counter_reads_as_prost_decodes_it() {
    // Unknown fields around the known ones, each known field twice (the
    // last counts), a negative value (ten-byte varint).
    let mut message = vec![0x18, 0x96, 0x01]; // field 3: varint 150
    message.extend([0x0a, 1, b'x']); // name "x", replaced below
    message.extend([0x10, 5]); // value 5, replaced below
    message.extend([0x21, 1, 2, 3, 4, 5, 6, 7, 8]); // field 4: fixed64
    message.extend([0x2d, 1, 2, 3, 4]); // field 5: fixed32
    message.extend([0x32, 2, b'z', b'z']); // field 6: bytes
    message.extend([0x0a, 4, b'n', b'a', b'm', b'e']);
    message.extend(
        proto::Stat {
            name: String::new(),
            value: -7,
        }
        .encode_to_vec(),
    );
    let prost = proto::Stat::decode(message.as_slice()).unwrap();
    assert_eq!((prost.name.as_str(), prost.value), ("name", -7));
    assert_eq!(stat_fields(&message).unwrap(), ("name", -7));
    // An empty counter: no fields at all.
    assert_eq!(stat_fields(&[]).unwrap(), ("", 0));
}

#[test]
fn a_malformed_counter_is_an_error() {
    for (bytes, why) in [
        (&[0x0a, 5, b'a'][..], "a name past the counter's end"),
        (&[0x0a, 1, 0xff], "a name that is not UTF-8"),
        (&[0x08, 1], "a name that is a varint"),
        (&[0x12, 1, 0], "a value that is bytes"),
        (&[0x10, 0x80], "a varint cut short"),
        (&[0x0b], "a group"),
    ] {
        assert!(stat_fields(bytes).is_err(), "{why}");
        assert!(proto::Stat::decode(bytes).is_err(), "prost too: {why}");
    }
}
