-- Network-aware routing and overflow tiers (issue 25).

-- 1 = own relays, 2 and up = used only when every lower tier is full or
-- down for the client. `poll` = 0: never polled (a CDN): counted as up,
-- its configured mounts as carried, its listeners by our reservations.
ALTER TABLE servers ADD COLUMN tier INTEGER NOT NULL DEFAULT 1;
ALTER TABLE servers ADD COLUMN poll INTEGER NOT NULL DEFAULT 1;
-- Client address families it can serve: '4' or '6'; NULL = both.
ALTER TABLE servers ADD COLUMN ip_versions TEXT;
-- Comma-separated AS numbers and CIDR prefixes; NULL = none. A client in
-- one of `asns` is offered the relay first; `only_asns`/`only_prefixes`
-- are the only clients it serves.
ALTER TABLE servers ADD COLUMN asns TEXT;
ALTER TABLE servers ADD COLUMN only_asns TEXT;
ALTER TABLE servers ADD COLUMN only_prefixes TEXT;

-- Bandwidth budgets: a server's outgoing limit in Mbit/s (NULL = none);
-- a stream's bitrate, charged per listener against it.
ALTER TABLE servers ADD COLUMN max_mbps REAL;
ALTER TABLE streams ADD COLUMN bitrate_kbps INTEGER;
