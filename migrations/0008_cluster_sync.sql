-- What this database last shared with a cluster (`--cluster`): per object
-- (`server:<name>`, `stream:<name>`, `user:<name>`) the version and body
-- last published or applied, and under the object '#seen' the version read up
-- to and the generation it belongs to. Empty on a server without a
-- cluster. Earlier versions created the table at run time, hence
-- IF NOT EXISTS.
CREATE TABLE IF NOT EXISTS cluster_sync (
    object  TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body    TEXT
);
