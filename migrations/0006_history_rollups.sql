-- Listener history as rollups instead of one row per mount per poll: the
-- peak per configured mount per minute (kept 2 hours, the dashboard's hour
-- view), per 5 minutes (kept a day) and per hour (kept --history-days). A
-- week at 1,000 mounts is about 0.1M + 0.3M + 0.17M short rows, not 40M. Keyed by the
-- configured mount, so a relay's unconfigured mounts get no history and a
-- deleted mount takes its history with it.

CREATE TABLE history_1m (
    mount_id  INTEGER NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    bucket    INTEGER NOT NULL,          -- unix ms, start of the minute
    listeners INTEGER NOT NULL,          -- peak within it
    PRIMARY KEY (mount_id, bucket)
) WITHOUT ROWID;
CREATE INDEX history_1m_bucket ON history_1m(bucket);

CREATE TABLE history_5m (
    mount_id  INTEGER NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    bucket    INTEGER NOT NULL,          -- unix ms, start of the 5 minutes
    listeners INTEGER NOT NULL,          -- peak within them
    PRIMARY KEY (mount_id, bucket)
) WITHOUT ROWID;
CREATE INDEX history_5m_bucket ON history_5m(bucket);

CREATE TABLE history_1h (
    mount_id  INTEGER NOT NULL REFERENCES mounts(id) ON DELETE CASCADE,
    bucket    INTEGER NOT NULL,          -- unix ms, start of the hour
    listeners INTEGER NOT NULL,
    PRIMARY KEY (mount_id, bucket)
) WITHOUT ROWID;
CREATE INDEX history_1h_bucket ON history_1h(bucket);

INSERT INTO history_1m (mount_id, bucket, listeners)
SELECT m.id, (h.at / 60000) * 60000, MAX(h.listeners)
FROM mount_history h JOIN mounts m ON m.server_id = h.server_id AND m.mount = h.mount
WHERE h.at >= (CAST(strftime('%s', 'now') AS INTEGER) - 7200) * 1000
GROUP BY 1, 2;

INSERT INTO history_5m (mount_id, bucket, listeners)
SELECT m.id, (h.at / 300000) * 300000, MAX(h.listeners)
FROM mount_history h JOIN mounts m ON m.server_id = h.server_id AND m.mount = h.mount
WHERE h.at >= (CAST(strftime('%s', 'now') AS INTEGER) - 86400) * 1000
GROUP BY 1, 2;

INSERT INTO history_1h (mount_id, bucket, listeners)
SELECT m.id, (h.at / 3600000) * 3600000, MAX(h.listeners)
FROM mount_history h JOIN mounts m ON m.server_id = h.server_id AND m.mount = h.mount
GROUP BY 1, 2;

DROP TABLE mount_history;
