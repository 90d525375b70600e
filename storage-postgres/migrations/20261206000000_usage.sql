-- Traffic accounting (issue 16): plans and used bytes on users, the usage
-- cursor, multiplier and totals on nodes, and the usage history.
--
-- Bytes are BIGINT and never exceed 9223372036854775807: the statements add
-- with a saturating CASE.

-- The plan (see manager_lib::domain::Plan); reset_day is the monthly day,
-- 0 for the other periods.
ALTER TABLE users
    ADD COLUMN data_limit BIGINT CHECK (data_limit > 0),
    ADD COLUMN expire_at BIGINT,
    ADD COLUMN reset_period TEXT NOT NULL DEFAULT 'none'
        CHECK (reset_period IN ('none', 'day', 'week', 'month', 'year')),
    ADD COLUMN reset_day SMALLINT NOT NULL DEFAULT 0 CHECK (reset_day BETWEEN 0 AND 28),
    -- Seconds of service counted from the first byte; cleared when it starts.
    ADD COLUMN on_hold BIGINT CHECK (on_hold > 0),
    -- Bytes since the last reset, after the nodes' multipliers.
    ADD COLUMN used_up BIGINT NOT NULL DEFAULT 0 CHECK (used_up >= 0),
    ADD COLUMN used_down BIGINT NOT NULL DEFAULT 0 CHECK (used_down >= 0),
    -- Why an enabled user is off the nodes. Set or cleared only together
    -- with a new change_seq and the enabled-user stripes (a user counts
    -- when enabled, live and not blocked).
    ADD COLUMN blocked TEXT CHECK (blocked IN ('Limited', 'Expired')),
    ADD COLUMN next_reset_at BIGINT,
    ADD COLUMN last_reset_at BIGINT;

-- enforce_time: users whose expiry may still block them, and due resets.
CREATE INDEX users_expire_at_idx ON users (expire_at)
    WHERE expire_at IS NOT NULL AND NOT deleted AND (blocked IS NULL OR blocked = 'Limited');
CREATE INDEX users_next_reset_at_idx ON users (next_reset_at)
    WHERE next_reset_at IS NOT NULL AND NOT deleted;

-- The manager's place in the node's usage journal, the node's multiplier
-- and its raw totals.
ALTER TABLE nodes
    ADD COLUMN usage_journal TEXT,
    ADD COLUMN usage_seq BIGINT NOT NULL DEFAULT 0 CHECK (usage_seq >= 0),
    ADD COLUMN traffic_multiplier DOUBLE PRECISION NOT NULL DEFAULT 1.0
        CHECK (traffic_multiplier > 0 AND traffic_multiplier < 'Infinity'),
    ADD COLUMN used_up BIGINT NOT NULL DEFAULT 0 CHECK (used_up >= 0),
    ADD COLUMN used_down BIGINT NOT NULL DEFAULT 0 CHECK (used_down >= 0);

-- Per user per node per UTC day (its midnight, ms), after the multiplier.
-- No foreign keys: history outlives deleted users and nodes until purged.
CREATE TABLE user_usage_daily (
    user_id UUID NOT NULL,
    day     BIGINT NOT NULL,
    node_id UUID NOT NULL,
    up      BIGINT NOT NULL CHECK (up >= 0),
    down    BIGINT NOT NULL CHECK (down >= 0),
    PRIMARY KEY (user_id, day, node_id)
);
CREATE INDEX user_usage_daily_day_idx ON user_usage_daily (day);

-- Per node per UTC hour (its start, ms), raw bytes.
CREATE TABLE node_usage_hourly (
    node_id UUID NOT NULL,
    hour    BIGINT NOT NULL,
    up      BIGINT NOT NULL CHECK (up >= 0),
    down    BIGINT NOT NULL CHECK (down >= 0),
    PRIMARY KEY (node_id, hour)
);
CREATE INDEX node_usage_hourly_hour_idx ON node_usage_hourly (hour);
