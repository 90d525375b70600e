-- The manager's state: nodes, users (with their tombstones) and the change log.
--
-- The change log is not a table. Every user change (enable, disable, delete)
-- takes the next number with
--     UPDATE meta SET last_seq = last_seq + 1 ... RETURNING last_seq
-- inside the transaction that makes the change, and stores it on the user as
-- `change_seq`. Each node keeps `applied_seq`, the newest change it applied, so
-- a node's pending operations are the users with change_seq > applied_seq.
--
-- Why a row in `meta` and not a SEQUENCE: nextval() is not transactional, so a
-- transaction could take 41, another take 42 and commit first; a reader would
-- then see 42, acknowledge it, and the node's cursor would jump over 41 when it
-- commits. The row lock taken by the UPDATE is held until commit, so changes
-- get their numbers and commit one after another: once a reader sees number N,
-- every change numbered below N is already committed (and a rolled-back change
-- gives its number back, so numbers are also gap-free).

CREATE TABLE meta (
    -- Exactly one row.
    singleton     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    -- The newest change's number.
    last_seq      BIGINT NOT NULL DEFAULT 0,
    -- How many users are enabled; kept by the same statements that take a number.
    enabled_users BIGINT NOT NULL DEFAULT 0 CHECK (enabled_users >= 0)
);
INSERT INTO meta (singleton) VALUES (TRUE);

CREATE TABLE nodes (
    id                   UUID PRIMARY KEY,
    endpoint             TEXT NOT NULL UNIQUE,
    -- The node's JWE key (base64url); never logged.
    node_key             TEXT NOT NULL,
    actual_status        TEXT NOT NULL CHECK (actual_status IN ('Running', 'Stopped', 'Error')),
    required_status      TEXT NOT NULL CHECK (required_status IN ('Running', 'Stopped')),
    user_config_template TEXT,
    state_up_to_date     BOOLEAN NOT NULL,
    applied_seq          BIGINT NOT NULL,
    -- Unix milliseconds, as every backend stores them.
    last_seen            BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    -- Manager replicas' leases, timed by the database clock.
    lease_owner          TEXT,
    lease_until          TIMESTAMPTZ
);

CREATE TABLE users (
    id         UUID PRIMARY KEY,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('Enabled', 'Disabled')),
    secret     TEXT NOT NULL,
    -- The number of the user's newest change; 0 when never changed.
    change_seq BIGINT NOT NULL DEFAULT 0,
    -- A deleted user stays as a tombstone until every node applied the delete.
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL
);

-- A node's pending operations:
--     WHERE change_seq > $cursor ORDER BY change_seq LIMIT $n
CREATE INDEX users_change_seq_idx ON users (change_seq);

-- purge_tombstones: the few deleted users, without scanning the live ones.
CREATE INDEX users_tombstones_idx ON users (change_seq) WHERE deleted;
