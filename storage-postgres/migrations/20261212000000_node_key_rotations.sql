-- Node key rotations (issue 19): per node, the key waiting to be delivered
-- to its agent and the key the last confirmed rotation replaced, kept until
-- its grace ends. Both keys are sealed at rest like nodes.node_key, bound to
-- the node's id and to their column. `id` is the node's id (the re-seal
-- step walks every secret column by `id`); the row goes with its node.
CREATE TABLE node_key_rotations (
    id             UUID   PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
    pending_key    TEXT,
    grace_ms       BIGINT NOT NULL,
    requested_at   BIGINT NOT NULL,
    previous_key   TEXT,
    previous_until BIGINT
);
CREATE INDEX node_key_rotations_pending ON node_key_rotations (id) WHERE pending_key IS NOT NULL;
