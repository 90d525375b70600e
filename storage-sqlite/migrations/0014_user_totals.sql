-- Users' used bytes in a narrow table of their own (issue 16's ingest
-- target). Ingest rewrites every reported user's totals; in `users` each of
-- those rows is a wide row (name, secret, plan, subscription key) at a place
-- set by its rowid, so a page of a node's users dirtied about one table page
-- per user plus the usage index's. Here a row is the id and two counts,
-- keyed by the id (WITHOUT ROWID): about five times as many rows fit a page,
-- the whole table stays in the writer's page cache, and a commit writes far
-- fewer pages to the WAL. Measured with the sqlite3 CLI on 1,000,000 users
-- (pages of 1,000 users, 32 pages a transaction, the totals update and the
-- history upsert, on a loaded machine): 1.9 to 2.3x the user-deltas a second
-- of the wide-row update when a node's users are neighbours by id, 1.2 to
-- 1.7x when they are spread over the id space as a real node's are.
--
-- A live user has exactly one row (the triggers below): the directory's
-- usage order reads the usage index of this table, so a user without a row
-- would be missing from it. A deleted user's row goes with the delete (its
-- totals are never read again), so the index holds live users only, as the
-- partial index it replaces did.
CREATE TABLE user_totals (
    user_id TEXT PRIMARY KEY NOT NULL,
    -- Bytes since the last reset, after the nodes' multipliers.
    up      INTEGER NOT NULL DEFAULT 0 CHECK (up >= 0),
    down    INTEGER NOT NULL DEFAULT 0 CHECK (down >= 0)
) STRICT, WITHOUT ROWID;

-- Existing totals carried over.
INSERT INTO user_totals (user_id, up, down)
    SELECT id, used_up, used_down FROM users WHERE deleted = 0;

DROP INDEX users_dir_usage;
ALTER TABLE users DROP COLUMN used_up;
ALTER TABLE users DROP COLUMN used_down;

-- The directory's usage order (kit::directory::USAGE_SQL over up and down).
CREATE INDEX user_totals_usage ON user_totals ((CASE WHEN up > 9223372036854775807 - down
     THEN 9223372036854775807 ELSE up + down END), user_id);

CREATE TRIGGER users_totals_insert AFTER INSERT ON users WHEN NEW.deleted = 0
BEGIN
    INSERT INTO user_totals (user_id) VALUES (NEW.id);
END;

CREATE TRIGGER users_totals_delete AFTER UPDATE OF deleted ON users
WHEN NEW.deleted = 1 AND OLD.deleted = 0
BEGIN
    DELETE FROM user_totals WHERE user_id = NEW.id;
END;

CREATE TRIGGER users_totals_purge AFTER DELETE ON users
BEGIN
    DELETE FROM user_totals WHERE user_id = OLD.id;
END;
