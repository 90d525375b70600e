//! How [`CachedStorage`](super::CachedStorage) lays out what it puts in the
//! cache: the key of a user row, the row itself, and the absence of one.

use crate::domain::{Seq, Timestamp, User, UserId, UserSecret, UserStatus};

pub(super) fn user_key(generation: u64, id: UserId) -> String {
    format!("u:{generation:x}:{id}")
}

/// The format version of a cached user row; a row of another version is
/// treated as absent, so a rolling upgrade never misreads one.
pub(super) const USER_ROW_V1: u8 = 1;
/// What the cache holds for an id the storage does not have: not a row of
/// any version, so a replica that does not know it reads the storage.
pub(super) const ABSENT_ROW: &[u8] = &[0];

/// A compact binary row: version, status, change_seq, created_at, secret
/// (length-prefixed), name (the rest). The id is the key's.
pub(super) fn encode_user(user: &User) -> Vec<u8> {
    let secret = user.secret.expose().as_bytes();
    let secret_len = u16::try_from(secret.len()).expect("a user secret is short");
    let mut out = Vec::with_capacity(20 + secret.len() + user.name.len());
    out.push(USER_ROW_V1);
    out.push(match user.status {
        UserStatus::Enabled => 1,
        UserStatus::Disabled => 0,
    });
    out.extend_from_slice(&user.change_seq.to_le_bytes());
    out.extend_from_slice(&user.created_at.0.to_le_bytes());
    out.extend_from_slice(&secret_len.to_le_bytes());
    out.extend_from_slice(secret);
    out.extend_from_slice(user.name.as_bytes());
    out
}

pub(super) fn decode_user(id: UserId, bytes: &[u8]) -> Option<User> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = bytes.split_at_checked(n)?;
        *bytes = tail;
        Some(head)
    }
    fn i64_le(bytes: &mut &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(take(bytes, 8)?.try_into().ok()?))
    }
    let mut rest = bytes;
    if take(&mut rest, 1)? != [USER_ROW_V1] {
        return None;
    }
    let status = match take(&mut rest, 1)? {
        [1] => UserStatus::Enabled,
        [0] => UserStatus::Disabled,
        _ => return None,
    };
    let change_seq: Seq = i64_le(&mut rest)?;
    let created_at = Timestamp(i64_le(&mut rest)?);
    let secret_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
    let secret = std::str::from_utf8(take(&mut rest, secret_len.into())?).ok()?;
    let name = std::str::from_utf8(rest).ok()?;
    Some(User {
        id,
        name: name.to_owned(),
        status,
        secret: UserSecret::from_stored(secret.to_owned()),
        change_seq,
        created_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, status: UserStatus) -> User {
        User {
            id: UserId::random(),
            name: name.to_owned(),
            status,
            secret: UserSecret::random(),
            change_seq: 1 << 40,
            created_at: Timestamp(-5),
        }
    }

    #[test]
    fn user_rows_round_trip() {
        for user in [
            sample("alice", UserStatus::Enabled),
            sample("", UserStatus::Disabled),
            sample(&"я🚀".repeat(200), UserStatus::Enabled),
        ] {
            assert_eq!(decode_user(user.id, &encode_user(&user)), Some(user));
        }
    }

    #[test]
    fn damaged_user_rows_are_not_read() {
        let user = sample("alice", UserStatus::Enabled);
        let bytes = encode_user(&user);
        assert_eq!(decode_user(user.id, &[]), None);
        assert_eq!(decode_user(user.id, &bytes[..10]), None);
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(decode_user(user.id, &other_version), None);
        let mut bad_status = bytes.clone();
        bad_status[1] = 7;
        assert_eq!(decode_user(user.id, &bad_status), None);
        // A secret length running past the end.
        let mut long_secret = bytes;
        long_secret[18] = 0xff;
        long_secret[19] = 0xff;
        assert_eq!(decode_user(user.id, &long_secret), None);
    }
}
