-- Scoped API tokens and the audit log (issue 19).
-- A token is stored only as a salt and SHA-256(salt || secret); its text
-- (id and secret) is shown once when it is made. Names stay unique for
-- good, revoked tokens included, so an audit entry's actor names one token.
CREATE TABLE api_tokens (
    id      UUID    PRIMARY KEY,
    name    TEXT    NOT NULL UNIQUE,
    role    TEXT    NOT NULL CHECK (role IN ('read-only', 'users', 'admin')),
    created BIGINT  NOT NULL,
    expires BIGINT,
    revoked BIGINT,
    salt    BYTEA   NOT NULL CHECK (length(salt) = 16),
    digest  BYTEA   NOT NULL CHECK (length(digest) = 32)
);

CREATE TABLE audit_log (
    id     BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     BIGINT   NOT NULL,
    actor  TEXT     NOT NULL,
    call   TEXT     NOT NULL,
    target TEXT,
    result SMALLINT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_target ON audit_log (target, id);
