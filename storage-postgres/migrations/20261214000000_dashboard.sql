-- Users by state for the dashboard's overview (issue 18): counters kept by a
-- trigger in the statement that changes a user, so the overview adds up a
-- few hundred rows instead of counting a million users. A user's state is
-- manager_lib::domain::User::state (the admin's switch, then the plan's
-- block, then a hold); a deleted user has none. The trigger runs only when
-- the state changes (usage that does not block costs nothing).
--
-- As enabled_stripes (migration 20250601000000): each state's count is split
-- over 16 rows and a change adds its +1/-1 to a row no other transaction has
-- locked right now (SKIP LOCKED), so concurrent writers do not queue on one
-- counter row; only when all 16 are taken does it wait for stripe 0. A
-- single stripe may go negative; the sum cannot.

CREATE TABLE user_state_stripes (
    state  TEXT NOT NULL
        CHECK (state IN ('active', 'limited', 'expired', 'on_hold', 'disabled')),
    stripe SMALLINT NOT NULL CHECK (stripe >= 0 AND stripe < 16),
    users  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (state, stripe)
);

INSERT INTO user_state_stripes (state, stripe)
SELECT s, generate_series(0, 15)
FROM unnest(ARRAY['active', 'limited', 'expired', 'on_hold', 'disabled']) AS s;

CREATE FUNCTION xm_user_state(status TEXT, deleted BOOLEAN, blocked TEXT, on_hold BIGINT)
RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN deleted THEN NULL
        WHEN status = 'Disabled' THEN 'disabled'
        WHEN blocked = 'Expired' THEN 'expired'
        WHEN blocked = 'Limited' THEN 'limited'
        WHEN on_hold IS NOT NULL THEN 'on_hold'
        ELSE 'active' END
$$;

-- Adds `delta` to one stripe of `st`.
CREATE FUNCTION xm_count_user_state(st TEXT, delta BIGINT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE user_state_stripes SET users = users + delta
    WHERE (state, stripe) = (
        SELECT state, stripe FROM user_state_stripes
        WHERE state = st
        ORDER BY random()
        LIMIT 1 FOR UPDATE SKIP LOCKED);
    IF NOT FOUND THEN
        UPDATE user_state_stripes SET users = users + delta WHERE state = st AND stripe = 0;
    END IF;
END $$;

CREATE FUNCTION xm_users_state_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    before TEXT;
    after TEXT;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        before := xm_user_state(OLD.status, OLD.deleted, OLD.blocked, OLD.on_hold);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        after := xm_user_state(NEW.status, NEW.deleted, NEW.blocked, NEW.on_hold);
    END IF;
    IF before IS DISTINCT FROM after THEN
        IF before IS NOT NULL THEN PERFORM xm_count_user_state(before, -1); END IF;
        IF after IS NOT NULL THEN PERFORM xm_count_user_state(after, 1); END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER users_state_insert AFTER INSERT ON users
    FOR EACH ROW EXECUTE FUNCTION xm_users_state_changed();
CREATE TRIGGER users_state_update AFTER UPDATE OF status, deleted, blocked, on_hold ON users
    FOR EACH ROW
    WHEN (xm_user_state(OLD.status, OLD.deleted, OLD.blocked, OLD.on_hold)
          IS DISTINCT FROM xm_user_state(NEW.status, NEW.deleted, NEW.blocked, NEW.on_hold))
    EXECUTE FUNCTION xm_users_state_changed();
CREATE TRIGGER users_state_delete AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION xm_users_state_changed();

-- The count starts from the users themselves (the table is locked so no
-- change slips between the count and the trigger).
LOCK TABLE users IN SHARE MODE;
UPDATE user_state_stripes SET users = counted.n
FROM (SELECT xm_user_state(status, deleted, blocked, on_hold) AS state, count(*) AS n
      FROM users WHERE NOT deleted GROUP BY 1) AS counted
WHERE user_state_stripes.state = counted.state AND user_state_stripes.stripe = 0;

-- Each node's recent heartbeat events (issue 18), the newest few per node
-- (manager_lib::storage::NodeEventLog): read newest first by (node_id, id),
-- gone with the node.
CREATE TABLE node_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node_id UUID NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL CHECK (kind IN ('failed', 'recovered', 'restarted', 'resynced')),
    detail  TEXT NOT NULL
);
CREATE INDEX node_events_node_idx ON node_events (node_id, id);
