-- Core model: what the operator configures (servers, streams, mounts) and what
-- the poll job learns (health, last per-mount usage, history for charts).
-- Times are unix milliseconds (INTEGER) so comparisons need no date parsing.

CREATE TABLE servers (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    url           TEXT    NOT NULL,
    https_url     TEXT,
    poll_url      TEXT,
    country       TEXT,
    latitude      REAL,
    longitude     REAL,
    max_listeners INTEGER,
    weight        INTEGER NOT NULL DEFAULT 100,
    enabled       INTEGER NOT NULL DEFAULT 1,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE streams (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL UNIQUE,
    description       TEXT    NOT NULL DEFAULT '',
    fallback_url      TEXT,
    -- Comma-separated ISO codes; NULL means no geo-restriction.
    allowed_countries TEXT,
    allow_unknown     INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE mounts (
    id         INTEGER PRIMARY KEY,
    stream_id  INTEGER NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    server_id  INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    mount      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    -- One mount point of a relay carries one stream.
    UNIQUE (server_id, mount)
);
CREATE INDEX mounts_stream ON mounts(stream_id);

-- Health per server, kept across restarts so rise/fall counting survives a
-- cron-driven `icecast-balancer poll` that runs as a separate process.
CREATE TABLE server_health (
    server_id             INTEGER PRIMARY KEY REFERENCES servers(id) ON DELETE CASCADE,
    state                 TEXT    NOT NULL DEFAULT 'unknown',
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    consecutive_successes INTEGER NOT NULL DEFAULT 0,
    last_error            TEXT,   -- kept after recovery, with its time
    last_error_at         INTEGER,
    last_poll_at          INTEGER,
    -- Start time of the last successful poll: reservations made before it
    -- (minus the connect grace) are known to be counted in `listeners`.
    last_success_at       INTEGER,
    latency_ms            INTEGER,
    source                TEXT
);

-- What the last successful poll of a server listed: every mount it carries,
-- configured or not (discovery uses the unconfigured ones).
CREATE TABLE mount_status (
    server_id     INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    mount         TEXT    NOT NULL,
    listeners     INTEGER NOT NULL,
    max_listeners INTEGER,          -- NULL = unlimited
    seen_at       INTEGER NOT NULL,
    PRIMARY KEY (server_id, mount)
);

CREATE TABLE mount_history (
    server_id     INTEGER NOT NULL REFERENCES servers(id) ON DELETE CASCADE,
    mount         TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    listeners     INTEGER NOT NULL,
    max_listeners INTEGER
);
CREATE INDEX mount_history_at ON mount_history(at);
CREATE INDEX mount_history_mount ON mount_history(server_id, mount, at);
