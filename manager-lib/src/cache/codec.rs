//! How [`CachedStorage`](super::CachedStorage) lays out what it puts in the
//! cache: the key of a user row, the row itself, and the absence of one.

use crate::domain::{
    BlockReason, Plan, ResetStrategy, Seq, SubscriptionKey, Timestamp, User, UserId, UserSecret,
    UserStatus,
};
use crate::seal::Sealer;

/// How a cached row holds the user's secret and subscription key.
#[derive(Clone, Debug)]
pub(super) enum Secrets {
    /// Sealed as in the database, for a cache whose values leave the
    /// process (Redis: its dumps, its replicas). Opening them costs two
    /// AEAD opens per cache hit.
    Sealed(Sealer),
    /// As they are in the process (the subscription key as its 16 bytes), for a
    /// process-local cache ([`Cache::is_process_local`](super::Cache::is_process_local)):
    /// the process holds them in clear anyway, and a hit opens nothing.
    Clear,
}

impl Secrets {
    /// The secrets of rows cached in `cache`: `seal` unless the cache is
    /// process-local.
    pub(super) fn for_cache(cache: &dyn super::Cache, seal: Sealer) -> Self {
        match cache.is_process_local() || !seal.is_sealing() {
            true => Self::Clear,
            false => Self::Sealed(seal),
        }
    }

    fn secret(&self, id: UserId, secret: &UserSecret) -> String {
        match self {
            Self::Sealed(seal) => seal.seal_user_secret(id, secret),
            Self::Clear => secret.expose().to_owned(),
        }
    }

    fn key(&self, id: UserId, key: &SubscriptionKey) -> Vec<u8> {
        match self {
            Self::Sealed(seal) => seal.seal_subscription_key(id, key).into_bytes(),
            Self::Clear => key.as_bytes().to_vec(),
        }
    }

    fn open_secret(&self, id: UserId, stored: &str) -> Option<UserSecret> {
        match self {
            Self::Sealed(seal) => seal.open_user_secret(&id.to_string(), stored).ok(),
            Self::Clear => Some(UserSecret::from_stored(stored.to_owned())),
        }
    }

    fn open_key(&self, id: UserId, stored: &[u8]) -> Option<SubscriptionKey> {
        match self {
            Self::Sealed(seal) => {
                let stored = std::str::from_utf8(stored).ok()?;
                seal.open_subscription_key(&id.to_string(), stored).ok()
            }
            Self::Clear => Some(SubscriptionKey::from_bytes(stored.try_into().ok()?)),
        }
    }
}

pub(super) fn user_key(generation: u64, id: UserId) -> String {
    format!("u:{generation:x}:{id}")
}

/// The first format version of a cached user row (still the feed record's
/// version); a row of another version is treated as absent, so a rolling
/// upgrade never misreads one.
pub(super) const USER_ROW_V1: u8 = 1;
/// What the cache holds for an id the storage does not have: not a row of
/// any version, so a replica that does not know it reads the storage.
pub(super) const ABSENT_ROW: &[u8] = &[0];

/// The format of a user row with its plan, usage (issue 16), subscription
/// key and device limit (issue 17), when it was read from the storage (the
/// age of its usage totals), its secret and its subscription key sealed
/// (issue 19). Replicas that only know an older format (1: no plan; 2: no
/// subscription key; 3: no read time; 4: the secret in clear, which a
/// version-4 reader would hand out sealed; 5: the subscription key in
/// clear) treat it as absent, and this one theirs.
pub(super) const USER_ROW_V6: u8 = 6;

/// A compact binary row: version, status, change_seq, created_at, blocked,
/// used up and down, the plan (limit, expiry, hold: each a presence byte and
/// 8 bytes; reset period and day), next and last reset, the subscription
/// key as `secrets` hold it (length-prefixed), the device limit (a presence
/// byte and 8 bytes), when the row was read from the storage (8 bytes), the
/// secret as `secrets` hold it (length-prefixed), name (the rest). The id is
/// the key's.
///
/// A shared cache is a dump too (Redis RDB and AOF files, a replica's
/// copy): there the secret and the subscription key are sealed as in the
/// database ([`Secrets::Sealed`]).
pub(super) fn encode_user(user: &User, read_at: Timestamp, secrets: &Secrets) -> Vec<u8> {
    fn opt(out: &mut Vec<u8>, v: Option<i64>) {
        out.push(u8::from(v.is_some()));
        out.extend_from_slice(&v.unwrap_or_default().to_le_bytes());
    }
    let secret = secrets.secret(user.id, &user.secret);
    let secret = secret.as_bytes();
    let secret_len = u16::try_from(secret.len()).expect("a user secret is short");
    let key = secrets.key(user.id, &user.subscription_key);
    let key_len = u16::try_from(key.len()).expect("a sealed key is short");
    let mut out = Vec::with_capacity(100 + secret.len() + user.name.len());
    out.push(USER_ROW_V6);
    out.push(match user.status {
        UserStatus::Enabled => 1,
        UserStatus::Disabled => 0,
    });
    out.extend_from_slice(&user.change_seq.to_le_bytes());
    out.extend_from_slice(&user.created_at.0.to_le_bytes());
    out.push(match user.blocked {
        None => 0,
        Some(BlockReason::Limited) => 1,
        Some(BlockReason::Expired) => 2,
    });
    out.extend_from_slice(&user.used_up.to_le_bytes());
    out.extend_from_slice(&user.used_down.to_le_bytes());
    let plan = &user.plan;
    opt(&mut out, plan.data_limit.map(|v| v as i64));
    opt(&mut out, plan.expire_at.map(|t| t.0));
    opt(&mut out, plan.on_hold.map(|v| v as i64));
    out.push(match plan.reset {
        ResetStrategy::None => 0,
        ResetStrategy::Day => 1,
        ResetStrategy::Week => 2,
        ResetStrategy::Month { .. } => 3,
        ResetStrategy::Year => 4,
    });
    out.push(plan.reset.month_day());
    opt(&mut out, user.next_reset_at.map(|t| t.0));
    opt(&mut out, user.last_reset_at.map(|t| t.0));
    out.extend_from_slice(&key_len.to_le_bytes());
    out.extend_from_slice(&key);
    opt(&mut out, user.device_limit.map(i64::from));
    out.extend_from_slice(&read_at.0.to_le_bytes());
    out.extend_from_slice(&secret_len.to_le_bytes());
    out.extend_from_slice(secret);
    out.extend_from_slice(user.name.as_bytes());
    out
}

/// A row [`encode_user`] wrote: the user, and when it was read from the
/// storage. A secret `secrets` cannot open makes the row unreadable.
pub(super) fn decode_user(
    id: UserId,
    bytes: &[u8],
    secrets: &Secrets,
) -> Option<(User, Timestamp)> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = bytes.split_at_checked(n)?;
        *bytes = tail;
        Some(head)
    }
    fn i64_le(bytes: &mut &[u8]) -> Option<i64> {
        Some(i64::from_le_bytes(take(bytes, 8)?.try_into().ok()?))
    }
    fn u64_le(bytes: &mut &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(take(bytes, 8)?.try_into().ok()?))
    }
    fn byte(bytes: &mut &[u8]) -> Option<u8> {
        Some(take(bytes, 1)?[0])
    }
    fn opt(bytes: &mut &[u8]) -> Option<Option<i64>> {
        let present = byte(bytes)?;
        let v = i64_le(bytes)?;
        match present {
            0 => Some(None),
            1 => Some(Some(v)),
            _ => None,
        }
    }
    let mut rest = bytes;
    if byte(&mut rest)? != USER_ROW_V6 {
        return None;
    }
    let status = match byte(&mut rest)? {
        1 => UserStatus::Enabled,
        0 => UserStatus::Disabled,
        _ => return None,
    };
    let change_seq: Seq = i64_le(&mut rest)?;
    let created_at = Timestamp(i64_le(&mut rest)?);
    let blocked = match byte(&mut rest)? {
        0 => None,
        1 => Some(BlockReason::Limited),
        2 => Some(BlockReason::Expired),
        _ => return None,
    };
    let used_up = u64_le(&mut rest)?;
    let used_down = u64_le(&mut rest)?;
    let data_limit = opt(&mut rest)?.map(|v| v as u64);
    let expire_at = opt(&mut rest)?.map(Timestamp);
    let on_hold = opt(&mut rest)?.map(|v| v as u64);
    let period = match byte(&mut rest)? {
        0 => "none",
        1 => "day",
        2 => "week",
        3 => "month",
        4 => "year",
        _ => return None,
    };
    let reset = ResetStrategy::from_parts(period, byte(&mut rest)?.into()).ok()?;
    let next_reset_at = opt(&mut rest)?.map(Timestamp);
    let last_reset_at = opt(&mut rest)?.map(Timestamp);
    let key_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
    let subscription_key = secrets.open_key(id, take(&mut rest, key_len.into())?)?;
    let device_limit = match opt(&mut rest)? {
        Some(v) => Some(u32::try_from(v).ok()?),
        None => None,
    };
    let read_at = Timestamp(i64_le(&mut rest)?);
    let secret_len = u16::from_le_bytes(take(&mut rest, 2)?.try_into().ok()?);
    let secret = std::str::from_utf8(take(&mut rest, secret_len.into())?).ok()?;
    let name = std::str::from_utf8(rest).ok()?;
    let user = User {
        id,
        name: name.to_owned(),
        status,
        secret: secrets.open_secret(id, secret)?,
        subscription_key,
        device_limit,
        change_seq,
        created_at,
        plan: Plan {
            data_limit,
            expire_at,
            reset,
            on_hold,
        },
        used_up,
        used_down,
        blocked,
        next_reset_at,
        last_reset_at,
    };
    Some((user, read_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::MasterKey;

    fn sample(name: &str, status: UserStatus) -> User {
        User {
            id: UserId::random(),
            name: name.to_owned(),
            status,
            secret: UserSecret::random(),
            subscription_key: SubscriptionKey::random(),
            device_limit: Some(3),
            change_seq: 1 << 40,
            created_at: Timestamp(-5),
            plan: Plan {
                data_limit: Some(u64::MAX >> 1),
                expire_at: None,
                reset: ResetStrategy::Month { day: 28 },
                on_hold: Some(3600),
            },
            used_up: 7,
            used_down: 1 << 50,
            blocked: Some(BlockReason::Limited),
            next_reset_at: Some(Timestamp(99)),
            last_reset_at: None,
        }
    }

    fn sealed() -> Secrets {
        Secrets::Sealed(Sealer::new(MasterKey::random(), Vec::new()))
    }

    #[test]
    fn user_rows_round_trip_with_secrets_clear_or_sealed() {
        for secrets in [Secrets::Clear, sealed()] {
            for user in [
                sample("alice", UserStatus::Enabled),
                sample("", UserStatus::Disabled),
                sample(&"я🚀".repeat(200), UserStatus::Enabled),
            ] {
                let read_at = Timestamp(1_800_000_000_123);
                assert_eq!(
                    decode_user(user.id, &encode_user(&user, read_at, &secrets), &secrets),
                    Some((user, read_at)),
                    "{secrets:?}"
                );
            }
        }
    }

    #[test]
    fn a_clear_secret_that_looks_sealed_still_reads_back() {
        let mut user = sample("alice", UserStatus::Enabled);
        user.secret =
            UserSecret::from_stored(format!("{}00000000.AAAA", crate::seal::SEALED_PREFIX));
        let bytes = encode_user(&user, Timestamp(1), &Secrets::Clear);
        assert_eq!(
            decode_user(user.id, &bytes, &Secrets::Clear),
            Some((user, Timestamp(1)))
        );
    }

    #[test]
    fn a_cached_secret_and_subscription_key_are_sealed_and_open_only_under_their_key_and_id() {
        let seal = sealed();
        let user = sample("alice", UserStatus::Enabled);
        let read_at = Timestamp(7);
        let bytes = encode_user(&user, read_at, &seal);
        let key_hex = user.subscription_key.to_hex();
        for clear in [
            user.secret.expose().as_bytes(),
            user.subscription_key.as_bytes().as_slice(),
            key_hex.as_bytes(),
        ] {
            assert!(!bytes.windows(clear.len()).any(|w| w == clear));
        }
        assert_eq!(
            decode_user(user.id, &bytes, &seal),
            Some((user.clone(), read_at))
        );
        assert_eq!(decode_user(user.id, &bytes, &sealed()), None);
        assert_eq!(decode_user(user.id, &bytes, &Secrets::Clear), None);
        assert_eq!(decode_user(UserId::random(), &bytes, &seal), None);
    }

    #[test]
    fn damaged_user_rows_are_not_read() {
        let user = sample("alice", UserStatus::Enabled);
        let seal = Secrets::Clear;
        let bytes = encode_user(&user, Timestamp(42), &seal);
        assert_eq!(decode_user(user.id, &[], &seal), None);
        assert_eq!(decode_user(user.id, &bytes[..10], &seal), None);
        let mut other_version = bytes.clone();
        for older in [USER_ROW_V1, 2, 3, 4, 5] {
            other_version[0] = older;
            assert_eq!(decode_user(user.id, &other_version, &seal), None);
        }
        let mut bad_status = bytes.clone();
        bad_status[1] = 7;
        assert_eq!(decode_user(user.id, &bad_status, &seal), None);
        // A secret length running past the end.
        let at = bytes.len() - user.name.len() - user.secret.expose().len() - 2;
        let mut long_secret = bytes.clone();
        long_secret[at] = 0xff;
        long_secret[at + 1] = 0xff;
        assert_eq!(decode_user(user.id, &long_secret, &seal), None);
        let mut bad_block = bytes;
        bad_block[18] = 3;
        assert_eq!(decode_user(user.id, &bad_block, &seal), None);
    }
}
