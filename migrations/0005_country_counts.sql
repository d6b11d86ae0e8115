-- Redirects per stream, per client country, per UTC hour: what royalty
-- reports ask for. Counted in memory on the redirect path and added here
-- by a background flush; rows older than the retention are pruned.
CREATE TABLE country_counts (
    stream_id INTEGER NOT NULL REFERENCES streams(id) ON DELETE CASCADE,
    hour      INTEGER NOT NULL,   -- unix ms of the hour's start
    country   TEXT    NOT NULL,   -- ISO 3166-1 alpha-2, '' when unknown
    redirects INTEGER NOT NULL,
    PRIMARY KEY (stream_id, hour, country)
);
CREATE INDEX country_counts_hour ON country_counts(hour);
