-- latch schema v13: what an OpenID Connect provider said about how a person
-- signed in, kept with the session so policy can ask (Cedar context.acr and
-- context.amr). Empty for every other kind of session.

ALTER TABLE sessions ADD COLUMN acr TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT '';   -- space-separated RFC 8176 values
