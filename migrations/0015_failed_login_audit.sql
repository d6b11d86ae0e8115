-- Failed logins are audited as one entry per (user name, address) and
-- hour with a count: this finds the entry to count on.
CREATE INDEX audit_login_failed ON audit(actor, object_name, id) WHERE action = 'login failed';
