-- The automation API (issue 26): tokens, object versions, announced relays.

-- Bearer tokens of /api/v1. Only the SHA-256 of a token is kept (it is
-- shown once, when made). `read` reads the configuration, `write` also
-- changes it, `announce` only registers relays for the listed streams.
CREATE TABLE api_tokens (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    scope      TEXT    NOT NULL CHECK (scope IN ('read', 'write', 'announce')),
    -- announce tokens: the streams its relays may carry, comma-separated.
    streams    TEXT,
    token_hash TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Every configuration object has a version for ETag / If-Match. It starts
-- at 1 and every UPDATE of the row adds one, whoever writes it (admin
-- form, import, cluster, API): the triggers see them all.
ALTER TABLE servers ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE streams ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE mounts ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 1;

CREATE TRIGGER servers_version AFTER UPDATE ON servers
WHEN NEW.version = OLD.version
BEGIN
    UPDATE servers SET version = OLD.version + 1 WHERE id = NEW.id;
END;

CREATE TRIGGER streams_version AFTER UPDATE ON streams
WHEN NEW.version = OLD.version
BEGIN
    UPDATE streams SET version = OLD.version + 1 WHERE id = NEW.id;
END;

CREATE TRIGGER mounts_version AFTER UPDATE ON mounts
WHEN NEW.version = OLD.version
BEGIN
    UPDATE mounts SET version = OLD.version + 1 WHERE id = NEW.id;
END;

CREATE TRIGGER users_version AFTER UPDATE ON users
WHEN NEW.version = OLD.version
BEGIN
    UPDATE users SET version = OLD.version + 1 WHERE id = NEW.id;
END;

-- Relays that registered themselves (POST /api/v1/relays/announce): the
-- server row is ordinary configuration; this notes who announced it and
-- when last, so it is drained when announcements stop and removed later.
CREATE TABLE announced_relays (
    server_id    INTEGER PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    token_name   TEXT    NOT NULL,
    last_seen_at INTEGER NOT NULL,   -- unix ms, by the injected clock
    drained_at   INTEGER             -- when it was disabled for silence
);
