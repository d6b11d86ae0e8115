-- A server's health is one of three states and its source one of two
-- files; anything else is a bug, refused at the database too.
CREATE TRIGGER server_health_state_insert BEFORE INSERT ON server_health
WHEN NEW.state NOT IN ('unknown', 'up', 'down')
  OR (NEW.source IS NOT NULL AND NEW.source NOT IN ('load.xsl', 'status-json.xsl'))
BEGIN
    SELECT RAISE(ABORT, 'server_health: state must be unknown, up or down; source load.xsl or status-json.xsl');
END;

CREATE TRIGGER server_health_state_update BEFORE UPDATE ON server_health
WHEN NEW.state NOT IN ('unknown', 'up', 'down')
  OR (NEW.source IS NOT NULL AND NEW.source NOT IN ('load.xsl', 'status-json.xsl'))
BEGIN
    SELECT RAISE(ABORT, 'server_health: state must be unknown, up or down; source load.xsl or status-json.xsl');
END;
