-- Users by state for the dashboard's overview (issue 18): counters kept by
-- triggers in the statement that changes a user, so the overview reads five
-- rows instead of counting a million users. A user's state is
-- manager_lib::domain::User::state (the admin's switch, then the plan's
-- block, then a hold); a deleted user has none. The triggers run only when
-- the state changes (usage that does not block costs nothing).
CREATE TABLE user_states (
    state TEXT PRIMARY KEY NOT NULL
        CHECK (state IN ('active', 'limited', 'expired', 'on_hold', 'disabled')),
    users INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;

INSERT INTO user_states (state, users) VALUES
    ('active', 0), ('limited', 0), ('expired', 0), ('on_hold', 0), ('disabled', 0);

-- The count starts from the users themselves.
UPDATE user_states SET users = (
    SELECT count(*) FROM users
    WHERE deleted = 0 AND user_states.state = CASE
        WHEN status = 'Disabled' THEN 'disabled'
        WHEN blocked = 'Expired' THEN 'expired'
        WHEN blocked = 'Limited' THEN 'limited'
        WHEN on_hold IS NOT NULL THEN 'on_hold'
        ELSE 'active' END);

CREATE TRIGGER users_state_insert AFTER INSERT ON users WHEN NEW.deleted = 0
BEGIN
    UPDATE user_states SET users = users + 1 WHERE state = CASE
        WHEN NEW.status = 'Disabled' THEN 'disabled'
        WHEN NEW.blocked = 'Expired' THEN 'expired'
        WHEN NEW.blocked = 'Limited' THEN 'limited'
        WHEN NEW.on_hold IS NOT NULL THEN 'on_hold'
        ELSE 'active' END;
END;

-- A NULL state (deleted) matches no row: a delete only takes one off.
CREATE TRIGGER users_state_update AFTER UPDATE OF status, deleted, blocked, on_hold ON users
WHEN OLD.status IS NOT NEW.status OR OLD.deleted IS NOT NEW.deleted
    OR OLD.blocked IS NOT NEW.blocked OR (OLD.on_hold IS NULL) IS NOT (NEW.on_hold IS NULL)
BEGIN
    UPDATE user_states SET users = users - 1 WHERE OLD.deleted = 0 AND state = CASE
        WHEN OLD.status = 'Disabled' THEN 'disabled'
        WHEN OLD.blocked = 'Expired' THEN 'expired'
        WHEN OLD.blocked = 'Limited' THEN 'limited'
        WHEN OLD.on_hold IS NOT NULL THEN 'on_hold'
        ELSE 'active' END;
    UPDATE user_states SET users = users + 1 WHERE NEW.deleted = 0 AND state = CASE
        WHEN NEW.status = 'Disabled' THEN 'disabled'
        WHEN NEW.blocked = 'Expired' THEN 'expired'
        WHEN NEW.blocked = 'Limited' THEN 'limited'
        WHEN NEW.on_hold IS NOT NULL THEN 'on_hold'
        ELSE 'active' END;
END;

CREATE TRIGGER users_state_delete AFTER DELETE ON users WHEN OLD.deleted = 0
BEGIN
    UPDATE user_states SET users = users - 1 WHERE state = CASE
        WHEN OLD.status = 'Disabled' THEN 'disabled'
        WHEN OLD.blocked = 'Expired' THEN 'expired'
        WHEN OLD.blocked = 'Limited' THEN 'limited'
        WHEN OLD.on_hold IS NOT NULL THEN 'on_hold'
        ELSE 'active' END;
END;

-- Each node's recent heartbeat events (issue 18), the newest few per node
-- (manager_lib::storage::NodeEventLog): read newest first by (node_id, id),
-- gone with the node.
CREATE TABLE node_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('failed', 'recovered', 'restarted', 'resynced')),
    detail  TEXT NOT NULL
) STRICT;
CREATE INDEX node_events_node ON node_events (node_id, id);
