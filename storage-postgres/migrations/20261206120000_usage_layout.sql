-- The usage history keyed the way ingest writes it: one node's users of one
-- day at a time. Keyed (day, node_id, user_id), the key lookups of a page's
-- upsert are neighbours in the index instead of one random index page per
-- user, and retention deletes a range of the key. A user's reads go through
-- the index by user.
ALTER TABLE user_usage_daily DROP CONSTRAINT user_usage_daily_pkey;
ALTER TABLE user_usage_daily ADD PRIMARY KEY (day, node_id, user_id);
DROP INDEX user_usage_daily_day_idx;
CREATE INDEX user_usage_daily_user_idx ON user_usage_daily (user_id, day);

-- Ingest rewrites users' used bytes, columns no index covers: with room left
-- on each page, PostgreSQL updates the row in place (a HOT update) instead
-- of writing a new version into every index of `users`. Applies to pages
-- written from now on.
ALTER TABLE users SET (fillfactor = 90);
