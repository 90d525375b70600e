-- The usage history keyed the way ingest writes it: one node's users of one
-- day at a time. Keyed (day, node_id, user_id), a page's rows are
-- neighbours, so storing a node's page rewrites a few pages of the table
-- instead of one page per user (key order by user scattered them over the
-- whole table), and retention deletes a range of the key. A user's reads
-- go through the index by user.
CREATE TABLE user_usage_daily_by_day (
    day     INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    up      INTEGER NOT NULL CHECK (up >= 0),
    down    INTEGER NOT NULL CHECK (down >= 0),
    PRIMARY KEY (day, node_id, user_id)
) STRICT, WITHOUT ROWID;
INSERT INTO user_usage_daily_by_day (day, node_id, user_id, up, down)
    SELECT day, node_id, user_id, up, down FROM user_usage_daily;
DROP TABLE user_usage_daily;
ALTER TABLE user_usage_daily_by_day RENAME TO user_usage_daily;
CREATE INDEX user_usage_daily_user ON user_usage_daily (user_id, day);
