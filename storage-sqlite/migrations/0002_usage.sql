-- Traffic accounting (issue 16): plans and used bytes on users, the usage
-- cursor, multiplier and totals on nodes, and the usage history.
--
-- Bytes are INTEGER and never exceed 9223372036854775807: every addition is
-- written as a saturating CASE in the statements, because SQLite turns an
-- overflowing integer sum into a REAL (which these STRICT tables refuse).

-- The plan (see manager_lib::domain::Plan). reset_day is the monthly day,
-- 0 for the other periods.
ALTER TABLE users ADD COLUMN data_limit INTEGER CHECK (data_limit IS NULL OR data_limit > 0);
ALTER TABLE users ADD COLUMN expire_at INTEGER;
ALTER TABLE users ADD COLUMN reset_period TEXT NOT NULL DEFAULT 'none'
    CHECK (reset_period IN ('none', 'day', 'week', 'month', 'year'));
ALTER TABLE users ADD COLUMN reset_day INTEGER NOT NULL DEFAULT 0
    CHECK (reset_day BETWEEN 0 AND 28);
-- Seconds of service counted from the first byte; cleared when it starts.
ALTER TABLE users ADD COLUMN on_hold INTEGER CHECK (on_hold IS NULL OR on_hold > 0);
-- Bytes since the last reset, after the nodes' multipliers.
ALTER TABLE users ADD COLUMN used_up INTEGER NOT NULL DEFAULT 0 CHECK (used_up >= 0);
ALTER TABLE users ADD COLUMN used_down INTEGER NOT NULL DEFAULT 0 CHECK (used_down >= 0);
-- Why an enabled user is off the nodes; changed only together with a new
-- change_seq (the trigger below refuses anything else).
ALTER TABLE users ADD COLUMN blocked TEXT CHECK (blocked IN ('Limited', 'Expired'));
ALTER TABLE users ADD COLUMN next_reset_at INTEGER;
ALTER TABLE users ADD COLUMN last_reset_at INTEGER;

-- enforce_time: users whose expiry may still block them, and due resets.
CREATE INDEX users_expire_at ON users (expire_at)
    WHERE expire_at IS NOT NULL AND deleted = 0 AND (blocked IS NULL OR blocked = 'Limited');
CREATE INDEX users_next_reset_at ON users (next_reset_at)
    WHERE next_reset_at IS NOT NULL AND deleted = 0;

-- The manager's place in the node's usage journal, the node's multiplier
-- and its raw totals.
ALTER TABLE nodes ADD COLUMN usage_journal TEXT;
ALTER TABLE nodes ADD COLUMN usage_seq INTEGER NOT NULL DEFAULT 0 CHECK (usage_seq >= 0);
ALTER TABLE nodes ADD COLUMN traffic_multiplier REAL NOT NULL DEFAULT 1.0
    CHECK (traffic_multiplier > 0);
ALTER TABLE nodes ADD COLUMN used_up INTEGER NOT NULL DEFAULT 0 CHECK (used_up >= 0);
ALTER TABLE nodes ADD COLUMN used_down INTEGER NOT NULL DEFAULT 0 CHECK (used_down >= 0);

-- Per user per node per UTC day (its midnight, ms), after the multiplier.
-- No foreign keys: history outlives deleted users and nodes until purged.
CREATE TABLE user_usage_daily (
    user_id TEXT NOT NULL,
    day     INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    up      INTEGER NOT NULL CHECK (up >= 0),
    down    INTEGER NOT NULL CHECK (down >= 0),
    PRIMARY KEY (user_id, day, node_id)
) STRICT, WITHOUT ROWID;
-- Retention purges by day.
CREATE INDEX user_usage_daily_day ON user_usage_daily (day);

-- Per node per UTC hour (its start, ms), raw bytes.
CREATE TABLE node_usage_hourly (
    node_id TEXT NOT NULL,
    hour    INTEGER NOT NULL,
    up      INTEGER NOT NULL CHECK (up >= 0),
    down    INTEGER NOT NULL CHECK (down >= 0),
    PRIMARY KEY (node_id, hour)
) STRICT, WITHOUT ROWID;
-- Range reads over every node, and retention.
CREATE INDEX node_usage_hourly_hour ON node_usage_hourly (hour);

-- A user is on the nodes when enabled, live and not blocked: the trigger
-- now also watches `blocked` (a block or unblock must take a number) and
-- counts only those users.
DROP TRIGGER users_change;
CREATE TRIGGER users_change AFTER UPDATE OF status, deleted, change_seq, blocked ON users
BEGIN
    SELECT RAISE(ABORT, 'a user change must take change_seq = meta.last_seq + 1')
    WHERE NEW.change_seq IS NOT (SELECT last_seq + 1 FROM meta WHERE id = 1);
    UPDATE meta SET
        last_seq = NEW.change_seq,
        enabled_users = enabled_users
            + (NEW.status = 'Enabled' AND NEW.deleted = 0 AND NEW.blocked IS NULL)
            - (OLD.status = 'Enabled' AND OLD.deleted = 0 AND OLD.blocked IS NULL)
    WHERE id = 1;
END;
