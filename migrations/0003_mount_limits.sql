-- Capacity truth (issue 9).
-- A mount's own limit: used when the relay reports none, else the lower of
-- the two (Icecast's status-json.xsl hides max_listeners).
ALTER TABLE mounts ADD COLUMN max_listeners INTEGER;
-- The relay's cumulative listener_connections at its last successful poll
-- (load.xsl reports it): how many listeners arrived between two polls,
-- departures or not, so reservations are counted once.
ALTER TABLE server_health ADD COLUMN listener_connections INTEGER;
-- Listeners who came over HTTPS are sent only to relays with an https_url.
ALTER TABLE streams ADD COLUMN require_https INTEGER NOT NULL DEFAULT 0;
