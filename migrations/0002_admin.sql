-- The admin: users, their sessions, failed-login tracking, and the audit log.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,   -- argon2id PHC string
    created_at    INTEGER NOT NULL
);

-- The cookie carries a random token; only its SHA-256 is stored, so a copy
-- of the database does not hand out live sessions.
CREATE TABLE sessions (
    token_hash   TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);

CREATE TABLE login_attempts (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    ip       TEXT    NOT NULL,
    username TEXT    NOT NULL,
    ok       INTEGER NOT NULL
);
CREATE INDEX login_attempts_at ON login_attempts(at);

CREATE TABLE audit (
    id          INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,   -- create, update, delete, login, login failed, …
    object_kind TEXT    NOT NULL,   -- server, stream, mount, user, session
    object_name TEXT    NOT NULL,
    before      TEXT,               -- TOML-ish "key = value" lines, NULL for create
    after       TEXT                -- NULL for delete
);
CREATE INDEX audit_at ON audit(at);
