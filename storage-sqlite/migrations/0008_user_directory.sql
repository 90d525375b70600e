-- The user directory (issue 18): one index per order, each over live users
-- only, with the id as the tie-break, so a page is an index range after the
-- cursor whatever its position. Names sort by bytes (BINARY collation):
-- code-point order, and a name prefix is a range. The usage key is the
-- same expression the query sorts by (kit::directory::USAGE_SQL).
CREATE INDEX users_dir_name ON users (name, id) WHERE deleted = 0;
CREATE INDEX users_dir_created ON users (created_at, id) WHERE deleted = 0;
CREATE INDEX users_dir_usage ON users ((CASE WHEN used_up > 9223372036854775807 - used_down
     THEN 9223372036854775807 ELSE used_up + used_down END), id) WHERE deleted = 0;
