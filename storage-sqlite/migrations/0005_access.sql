-- Scoped API tokens and the audit log.
-- A token is stored only as a salt and SHA-256(salt || secret); its text
-- (id and secret) is shown once when it is made. Names stay unique for
-- good, revoked tokens included, so an audit entry's actor names one token.
CREATE TABLE api_tokens (
    id      TEXT    PRIMARY KEY NOT NULL,
    name    TEXT    NOT NULL UNIQUE,
    role    TEXT    NOT NULL CHECK (role IN ('read-only', 'users', 'admin')),
    created INTEGER NOT NULL,
    expires INTEGER,
    revoked INTEGER,
    salt    BLOB    NOT NULL CHECK (length(salt) = 16),
    digest  BLOB    NOT NULL CHECK (length(digest) = 32)
);

-- AUTOINCREMENT: ids are never reused after a purge, so a page cursor
-- (`before`) keeps its meaning.
CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    call   TEXT    NOT NULL,
    target TEXT,
    result INTEGER NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_target ON audit_log (target, id);
