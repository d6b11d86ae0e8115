-- The secret a relay's Icecast URL-auth callbacks authenticate with
-- (HTTP basic auth, user = the server's name). NULL: no callbacks.
ALTER TABLE servers ADD COLUMN callback_token TEXT;
