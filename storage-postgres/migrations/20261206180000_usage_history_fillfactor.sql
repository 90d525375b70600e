-- A day's history row is written once and then rewritten by every page of
-- its node that day. Packed full, each rewrite found no room on its page,
-- so PostgreSQL wrote the new version elsewhere and a new entry into both
-- indexes (measured at 1M users, 1,000 nodes x 1,000 users: 7% of 7M
-- upserts were HOT, 6.7M dead versions, the table and its indexes grew to
-- 784 MB in three rounds). A page's rows belong to one node and day and are
-- rewritten together: half a page free holds their new versions, so the
-- rewrites are HOT (99% measured) and pruned in place. Applies to pages
-- written from now on, i.e. from the next day's rows.
ALTER TABLE user_usage_daily SET (fillfactor = 50);
