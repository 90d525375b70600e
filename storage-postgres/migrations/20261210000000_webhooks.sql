-- The webhook outbox (issue 19): one row per (event, endpoint) delivery,
-- claimed by one manager replica at a time with a lease, retried at
-- `next_at`, pruned some time after `delivered`. The body is stored as
-- sent, so every retry carries (and signs) the same bytes.
CREATE TABLE webhook_outbox (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created     BIGINT  NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     BIGINT  NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    delivered   BIGINT,
    last_error  TEXT,
    UNIQUE (event_id, endpoint)
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at, id) WHERE delivered IS NULL;
CREATE INDEX webhook_outbox_delivered ON webhook_outbox (delivered) WHERE delivered IS NOT NULL;
