-- latch schema v7: people sign in through OpenID Connect providers.
-- A pending sign-in (authorization code flow with PKCE) lives here from
-- start to callback, used once; an external identity (provider + subject)
-- is linked to the latch user it was provisioned as, so a name alone never
-- decides who someone is.

CREATE TABLE oidc_logins (
    state         TEXT PRIMARY KEY,      -- random, sent through the browser
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,         -- must come back in the ID token
    code_verifier TEXT NOT NULL,         -- PKCE; useless without the code, which never reaches the database
    redirect_uri  TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oidc_logins_expiry ON oidc_logins (expires_at);

CREATE TABLE external_identities (
    provider      TEXT NOT NULL,
    subject       TEXT NOT NULL,         -- the IdP's sub: stable, unlike names
    user_id       TEXT NOT NULL REFERENCES users(id),
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX external_identities_user ON external_identities (user_id);
