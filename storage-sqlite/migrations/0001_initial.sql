-- The manager's state on SQLite. See manager-lib/src/storage.rs for the design:
-- every user change takes the next number of one fleet-wide sequence
-- (`meta.last_seq`) and stores it on the user (`users.change_seq`); each node
-- keeps the newest change it applied (`nodes.applied_seq`). A node's pending
-- operations are the users with `change_seq > applied_seq`.
--
-- Conventions: ids are the canonical 36-character lower-case UUID text (so
-- text order is id order); timestamps are INTEGER unix milliseconds; booleans
-- are INTEGER 0/1; statuses are the domain's spelling ('Running', ...).
-- Tables are STRICT so a wrongly typed value is refused when written, not
-- discovered when read.

-- Exactly one row: the newest sequence number handed out and how many
-- (live) users are enabled, kept by the same transactions that change users.
CREATE TABLE meta (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq      INTEGER NOT NULL CHECK (last_seq >= 0),
    enabled_users INTEGER NOT NULL CHECK (enabled_users >= 0)
) STRICT;

INSERT INTO meta (id, last_seq, enabled_users) VALUES (1, 0, 0);

CREATE TABLE nodes (
    id                   TEXT PRIMARY KEY NOT NULL,
    endpoint             TEXT NOT NULL UNIQUE,
    -- The JWE key shared with the node (base64url).
    key                  TEXT NOT NULL,
    actual_status        TEXT NOT NULL CHECK (actual_status IN ('Running', 'Stopped', 'Error')),
    required_status      TEXT NOT NULL CHECK (required_status IN ('Running', 'Stopped')),
    user_config_template TEXT,
    state_up_to_date     INTEGER NOT NULL CHECK (state_up_to_date IN (0, 1)),
    -- The node's cursor in the change log.
    applied_seq          INTEGER NOT NULL,
    last_seen            INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    -- The manager replica holding the node, until `lease_until` (ms).
    lease_owner          TEXT,
    lease_until          INTEGER
) STRICT;

-- A deleted user stays as a tombstone (`deleted = 1`, status 'Disabled') until
-- every node that may hold it applied the delete; no read but the pending
-- operations sees it.
CREATE TABLE users (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('Enabled', 'Disabled')),
    -- The Trojan/Shadowsocks password.
    secret     TEXT NOT NULL,
    -- The user's newest change; 0 while never changed (then on no node).
    change_seq INTEGER NOT NULL DEFAULT 0,
    deleted    INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    created_at INTEGER NOT NULL
) STRICT;

-- Pending operations: WHERE change_seq > ? ORDER BY change_seq LIMIT ?.
CREATE INDEX users_change_seq ON users (change_seq);

-- /start reads every enabled user in id order; tombstones are never 'Enabled'.
CREATE INDEX users_enabled ON users (id) WHERE status = 'Enabled';

-- purge_tombstones looks at deleted users only.
CREATE INDEX users_tombstones ON users (change_seq) WHERE deleted = 1;

-- Every user change (enable, disable, delete) is one UPDATE of the user that
-- sets `change_seq = meta.last_seq + 1`. This trigger, part of that same
-- statement and so of its transaction, hands the number out and keeps the
-- enabled count: a change is whole or absent, costs one statement, and no
-- status can change without a new sequence number (the check aborts it).
CREATE TRIGGER users_change AFTER UPDATE OF status, deleted, change_seq ON users
BEGIN
    SELECT RAISE(ABORT, 'a user change must take change_seq = meta.last_seq + 1')
    WHERE NEW.change_seq IS NOT (SELECT last_seq + 1 FROM meta WHERE id = 1);
    UPDATE meta SET
        last_seq = NEW.change_seq,
        enabled_users = enabled_users
            + (NEW.status = 'Enabled' AND NEW.deleted = 0)
            - (OLD.status = 'Enabled' AND OLD.deleted = 0)
    WHERE id = 1;
END;
