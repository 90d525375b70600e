-- Change numbers from a SEQUENCE, an advisory lock instead of the `meta` row
-- lock, and a striped enabled-user count.
--
-- Before this migration every change ran
--     UPDATE meta SET last_seq = last_seq + 1, enabled_users = ... RETURNING
-- so the one `meta` row was locked from the number's allocation until the
-- commit's fsync: changes were fully serialised and group commit could not
-- help (about 360 user changes per second on a small machine).
--
-- Now:
--
-- * A change takes its number with xm_next_change_seq(): it first takes the
--   advisory lock XM_CHANGE_LOCK in SHARED mode for the rest of its
--   transaction, then calls nextval(). Writers do not block each other, so
--   their commits are flushed together.
--
-- * A reader that needs a gap-free committed prefix (a node's pending batch,
--   the start snapshot's number, a new node's cursor, fleet_state) first takes
--   the same lock EXCLUSIVELY with xm_wait_for_changes(), then, in a LATER
--   statement (a new READ COMMITTED snapshot), reads the newest committed
--   change number H. Why every change numbered <= H is then committed or
--   rolled back, and every later one gets a number > H:
--     - a writer that called nextval() before the exclusive lock was granted
--       held the shared lock at that moment, so it had already ended; a
--       transaction's locks are released only after its commit is visible,
--       so the reader's later snapshot sees it;
--     - a writer that calls nextval() after the grant waits for the shared
--       lock until the reader's transaction ends, and the sequence only grows
--       (CACHE 1: no session keeps numbers back for later), so its number is
--       larger than every number handed out before, H included.
--   The reader holds the exclusive lock only for one short statement: new
--   writers queue behind it that long (PostgreSQL queues a new shared request
--   behind a waiting exclusive one, so readers are not starved either).
--
-- * Every writer takes the shared lock BEFORE any row lock (the Rust side
--   calls xm_change_lock() in the filter of the row it is about to lock):
--   a writer holding a row lock never waits for the advisory lock, so writers
--   and readers cannot wait for each other in a cycle.
--
-- * A rolled-back change leaves a gap in the numbers. That is harmless: a
--   cursor only has to never pass a number that may still commit.
--
-- * The enabled-user count is split over 64 rows; a change adds its +1/-1 to
--   a stripe no other transaction has locked right now (SKIP LOCKED), and
--   readers add the stripes up. A single stripe may go negative; the sum
--   cannot.
--
-- * The newest committed change is max(users.change_seq) (an index's last
--   entry), or meta.floor_seq when that is larger: purge_tombstones records
--   there the numbers of the tombstones it removes, and this migration the
--   newest number of the old counter, so the newest change never goes
--   backwards.
--
-- Every manager replica must run code that knows this schema: the old
-- columns are dropped so an old binary fails loudly instead of taking numbers
-- from a counter nobody else uses.

-- Old writers update `users` and `meta` together: wait for those in flight
-- and keep new ones out until the switch is done.
LOCK TABLE meta, users IN EXCLUSIVE MODE;

CREATE SEQUENCE change_seq AS BIGINT MINVALUE 0 START WITH 1 CACHE 1 NO CYCLE;
-- Continue after the newest number handed out by the old counter.
SELECT setval('change_seq', last_seq, TRUE) FROM meta;

ALTER TABLE meta ADD COLUMN floor_seq BIGINT NOT NULL DEFAULT 0;
UPDATE meta SET floor_seq = last_seq;

CREATE TABLE enabled_stripes (
    stripe  SMALLINT PRIMARY KEY CHECK (stripe >= 0 AND stripe < 64),
    enabled BIGINT NOT NULL DEFAULT 0
);
INSERT INTO enabled_stripes (stripe) SELECT generate_series(0, 63);
-- The count starts from the users themselves.
UPDATE enabled_stripes
SET enabled = (SELECT count(*) FROM users WHERE status = 'Enabled' AND NOT deleted)
WHERE stripe = 0;

ALTER TABLE meta DROP COLUMN last_seq, DROP COLUMN enabled_users;

-- XM_CHANGE_LOCK = 8676924455681172071 (0x786aa0d1f3c6a267), one key for the
-- whole database; only these functions use it.

-- Takes the change lock in shared mode (re-entrant); TRUE, so it can sit in
-- a WHERE clause ahead of a row lock.
CREATE FUNCTION xm_change_lock() RETURNS BOOLEAN
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$
    SELECT pg_advisory_xact_lock_shared(8676924455681172071);
    SELECT TRUE;
$$;

-- The next change number, always under the shared change lock.
CREATE FUNCTION xm_next_change_seq() RETURNS BIGINT
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$
    SELECT pg_advisory_xact_lock_shared(8676924455681172071);
    SELECT nextval('change_seq');
$$;

-- Waits until no change is in flight and keeps new ones from taking a number
-- until the caller's transaction ends. Read in a later statement.
CREATE FUNCTION xm_wait_for_changes() RETURNS VOID
LANGUAGE sql VOLATILE PARALLEL UNSAFE
AS $$
    SELECT pg_advisory_xact_lock(8676924455681172071);
$$;
