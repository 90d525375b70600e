-- The user directory (issue 18): one index per order, each over live users
-- only, with the id as the tie-break, so a page is an index range after the
-- cursor whatever its position. Names sort with the "C" collation (bytes,
-- code-point order) whatever the database's locale: a name prefix is a
-- range. The usage key is the same expression the query sorts by
-- (kit::directory::USAGE_SQL).
CREATE INDEX users_dir_name_idx ON users ((name COLLATE "C"), id) WHERE NOT deleted;
CREATE INDEX users_dir_created_idx ON users (created_at, id) WHERE NOT deleted;
CREATE INDEX users_dir_usage_idx ON users ((CASE WHEN used_up > 9223372036854775807 - used_down
     THEN 9223372036854775807 ELSE used_up + used_down END), id) WHERE NOT deleted;
-- A state filter in name order (the table's default): the plan's block
-- first, so a rare state (expired, limited) is a range read in order
-- instead of a scan of the name index that skips the others.
CREATE INDEX users_dir_blocked_name_idx ON users (blocked, (name COLLATE "C"), id) WHERE NOT deleted;
