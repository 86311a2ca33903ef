//! The authorization matrix: every HTTP route × every kind of caller, with
//! the outcome each must get, against one real server.
//!
//! Callers (columns, in this order):
//!
//! | column   | who                                                                   |
//! |----------|-----------------------------------------------------------------------|
//! | anon     | no `Authorization` header                                             |
//! | user     | alice, group `eng`: owns the requests and grants the rows point at    |
//! | other    | bob, group `eng`: a plain user who owns none of them                  |
//! | approver | lead, group `leads`, which role `ops` names as its approvers          |
//! | admin    | the bootstrap `admin` user (group `admins`)                           |
//! | sp       | service principal `ci`, group `eng`                                   |
//! | disabled | dave's session, valid until an admin disabled dave                    |
//! | expired  | eve's session, valid until the test clock passed its 8 h lifetime     |
//! | revoked  | fay's session, valid until she logged out                             |
//!
//! Outcome classes (cells), decided from the status alone; every path
//! parameter names a resource that exists, so a 404 is never "not found by
//! accident":
//!
//! * `A` allowed and done: 2xx.
//! * `P` allowed past authorization, then refused on the merits: 400 or 409.
//!   Only where the row's request is built to fail after the caller's checks
//!   (a wrong TOTP code): some routes validate a comment or an id before
//!   ownership, so a 400 alone would not prove authorization passed. Every
//!   other row sends a valid body for existing resources in a usable state,
//!   and a cell matches only its own class, so a stray 400/409 fails it.
//! * `N` 401: no, bad, expired, revoked or disabled credentials.
//! * `F` 403: authenticated but not permitted (by role, ownership or policy).
//! * `H` 404 for a resource that exists: refused without revealing it.
//!
//! Any other status (405, 415, 5xx, a 404 from the router's fallback) fails
//! its cell. Destructive rows act on per-caller throwaway resources (a victim
//! user, group, service principal, pending request, break-glass request or
//! grant each), so every cell is independent of the others; `logout` uses a
//! fresh session of the caller. The set of rows must equal the set of routes
//! in `GET /v1/openapi.json` (plus the spec itself), so a new route fails here
//! until it has a row.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::time::Instant;

use common::Server;
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

/// An outcome class; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum O {
    A,
    P,
    N,
    F,
    H,
}
use O::{A, F, H, N, P};

const ACTORS: [&str; 9] = ["anon", "user", "other", "approver", "admin", "sp", "disabled", "expired", "revoked"];

/// (route as in the OpenAPI document, bindings, expected outcome per actor).
/// Columns: `an`on, `us`er, `ot`her, `ap`prover, `ad`min, `sp`, `di`sabled,
/// `ex`pired, `re`voked.
///
/// Bindings: `param=resource` fills `{param}` with a resource made in
/// `setup` (the caller's own throwaway one when it has one, `resource@actor`);
/// `?query` is appended; `fresh-session` sends a new session of the caller
/// instead of the shared one. Bodies come from [`body`], by route.
type Row = (&'static str, &'static str, [O; 9]);

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    // route                                                  bindings                            an us ot ap ad sp di ex re
    // -- public: anyone, whatever (even invalid) credentials come along --
    ("GET /v1/sys/health",                                    "",                                [A, A, A, A, A, A, A, A, A]),
    ("GET /v1/openapi.json",                                  "",                                [A, A, A, A, A, A, A, A, A]),
    ("GET /.well-known/jwks.json",                            "",                                [A, A, A, A, A, A, A, A, A]),
    ("GET /.well-known/openid-configuration",                 "",                                [A, A, A, A, A, A, A, A, A]),
    ("GET /v1/tokens/revoked",                                "",                                [A, A, A, A, A, A, A, A, A]),
    ("GET /v1/ssh/ca",                                        "",                                [A, A, A, A, A, A, A, A, A]),
    ("GET /v1/ssh/krl",                                       "",                                [A, A, A, A, A, A, A, A, A]),
    ("GET /v1/audit/key",                                     "",                                [A, A, A, A, A, A, A, A, A]),
    ("POST /v1/auth/login",                                   "",                                [A, A, A, A, A, A, A, A, A]),
    ("POST /v1/auth/sp/login",                                "",                                [A, A, A, A, A, A, A, A, A]),
    // token exchange authenticates by the presented JWT alone (any Authorization header is
    // ignored); the row's JWT is latch's own, whose issuer no principal is federated with: 400
    // invalid_grant for everyone (tests/exchange.rs exchanges real ones)
    ("POST /v1/auth/exchange",                                "",                                [P, P, P, P, P, P, P, P, P]),
    // people's sign-in through an OIDC provider (the matrix's is a loopback issuer that serves
    // discovery only): listing and starting need no credentials; a callback with a state latch
    // never issued is refused on the merits (tests/oidc_login.rs signs in for real)
    ("GET /v1/auth/oidc",                                     "",                                [A, A, A, A, A, A, A, A, A]),
    ("POST /v1/auth/oidc/{provider}/start",                   "provider=oidc_provider",          [A, A, A, A, A, A, A, A, A]),
    ("POST /v1/auth/oidc/{provider}/callback",                "provider=oidc_provider",          [P, P, P, P, P, P, P, P, P]),
    // the device grant: the matrix's provider offers none, so starting is refused on the merits
    // (400, "use the browser redirect"); polling a handle latch never issued likewise
    // (tests/oidc_login.rs signs in through a real one)
    ("POST /v1/auth/oidc/{provider}/device",                  "provider=oidc_provider",          [P, P, P, P, P, P, P, P, P]),
    ("POST /v1/auth/oidc/{provider}/device/poll",             "provider=oidc_provider",          [P, P, P, P, P, P, P, P, P]),
    // -- one's own session --
    ("GET /v1/auth/whoami",                                   "",                                [N, A, A, A, A, A, N, N, N]),
    ("POST /v1/auth/logout",                                  "fresh-session",                   [N, A, A, A, A, A, N, N, N]),
    ("POST /v1/auth/mfa/enroll",                              "",                                [N, A, A, A, A, F, N, N, N]),
    // after enroll: a pending enrollment and a wrong code, so 400 once past authorization
    ("POST /v1/auth/mfa/confirm",                             "",                                [N, P, P, P, P, F, N, N, N]),
    // -- system (admins) --
    ("POST /v1/sys/test/clock",                               "",                                [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/sys/notifications",                             "",                                [N, F, F, F, A, F, N, N, N]),
    // admins and members of group metrics-readers (none here), unless [metrics] public = true
    ("GET /metrics",                                          "",                                [N, F, F, F, A, F, N, N, N]),
    // the same readers, but always with a token (the report names principals and grants)
    ("GET /v1/slo",                                           "?window=7d",                      [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/inventory",                                     "",                                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/sys/keys/token/rotate",                        "",                                [N, F, F, F, A, F, N, N, N]),
    // -- users (admins) --
    ("GET /v1/users",                                         "",                                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/users",                                        "",                                [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/users/{name}",                                  "name=victim_user",                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/users/{name}/disable",                         "name=victim_user",                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/users/{name}/enable",                          "name=victim_user",                [N, F, F, F, A, F, N, N, N]),
    ("PUT /v1/users/{name}/password",                         "name=victim_user",                [N, F, F, F, A, F, N, N, N]),
    ("DELETE /v1/users/{name}/mfa",                           "name=victim_user",                [N, F, F, F, A, F, N, N, N]),
    ("DELETE /v1/users/{name}",                               "name=victim_user",                [N, F, F, F, A, F, N, N, N]),
    // -- groups (admins) --
    ("GET /v1/groups",                                        "",                                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/groups",                                       "",                                [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/groups/{name}",                                 "name=victim_group",               [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/groups/{name}/members",                        "name=victim_group",               [N, F, F, F, A, F, N, N, N]),
    ("DELETE /v1/groups/{name}/members/{kind}/{member}",      "name=victim_group kind=user_kind member=alice",
                                                                                                 [N, F, F, F, A, F, N, N, N]),
    ("DELETE /v1/groups/{name}",                              "name=victim_group",               [N, F, F, F, A, F, N, N, N]),
    // -- service principals (admins) --
    ("GET /v1/service-principals",                            "",                                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/service-principals",                           "",                                [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/service-principals/{name}",                     "name=victim_sp",                  [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/service-principals/{name}/rotate-secret",      "name=victim_sp",                  [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/service-principals/{name}/disable",            "name=victim_sp",                  [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/service-principals/{name}/enable",             "name=victim_sp",                  [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/service-principals/{name}/federations",        "name=fed_sp",                     [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/service-principals/{name}/federations",         "name=fed_sp",                     [N, F, F, F, A, F, N, N, N]),
    ("DELETE /v1/service-principals/{name}/federations/{federation}", "name=fed_sp federation=fed_name",
                                                                                                 [N, F, F, F, A, F, N, N, N]),
    ("DELETE /v1/service-principals/{name}",                  "name=victim_sp",                  [N, F, F, F, A, F, N, N, N]),
    // -- audit (admins; the checkpoint key above is public) --
    ("GET /v1/audit/events",                                  "?limit=5",                        [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/audit/checkpoints",                             "",                                [N, F, F, F, A, F, N, N, N]),
    // -- policy: anyone signed in reads it; admins change, simulate and replay it --
    ("GET /v1/policy",                                        "",                                [N, A, A, A, A, A, N, N, N]),
    ("POST /v1/policy/apply",                                 "",                                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/policy/simulate",                              "",                                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/policy/replay",                                "",                                [N, F, F, F, A, F, N, N, N]),
    // -- requests: policy `anyone-may-request`; approval by role ops's approvers only --
    ("GET /v1/requests",                                      "",                                [N, A, A, A, A, A, N, N, N]),
    ("POST /v1/requests",                                     "",                                [N, A, A, A, A, A, N, N, N]),
    ("GET /v1/requests/{id}",                                 "id=alice_pending",                [N, A, H, A, A, H, N, N, N]),
    ("POST /v1/requests/{id}/approve",                        "id=approve_me",                   [N, F, F, A, F, F, N, N, N]),
    ("POST /v1/requests/{id}/deny",                           "id=deny_me",                      [N, F, F, A, F, F, N, N, N]),
    ("POST /v1/requests/{id}/cancel",                         "id=cancel_me",                    [N, A, F, F, A, F, N, N, N]),
    // policy `eng-breakglass` (alice, bob; not lead, not admin) and `no-machine-breakglass` (sp)
    ("POST /v1/breakglass",                                   "",                                [N, A, A, F, F, F, N, N, N]),
    ("POST /v1/requests/{id}/review",                         "id=review_me",                    [N, F, F, A, A, F, N, N, N]),
    // -- grants: the holder; admins see and revoke, but never mint on someone else's grant --
    ("GET /v1/grants",                                        "",                                [N, A, A, A, A, A, N, N, N]),
    ("GET /v1/grants",                                        "?all=true",                       [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/grants/{id}",                                   "id=alice_grant",                  [N, A, H, H, A, H, N, N, N]),
    ("POST /v1/grants/{id}/token",                            "id=alice_grant",                  [N, A, F, F, F, F, N, N, N]),
    ("POST /v1/grants/{id}/ssh",                              "id=alice_grant",                  [N, A, F, F, F, F, N, N, N]),
    ("POST /v1/grants/{id}/revoke",                           "id=revoke_me",                    [N, A, F, F, A, F, N, N, N]),
    // -- dynamic database credentials: a PostgreSQL login under one's own grant only (like tokens);
    //    connections and the list of every credential are admins'; a lease is seen and revoked by its
    //    holder and admins (404 for anyone else), renewed by its holder only; revoke-prefix is admins'
    ("POST /v1/grants/{id}/db-creds",                         "id=alice_grant",                  [N, A, F, F, F, F, N, N, N]),
    ("POST /v1/db/connections",                               "",                                [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/db/connections",                                "",                                [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/db/connections/{name}",                         "name=db_conn",                    [N, F, F, F, A, F, N, N, N]),
    ("DELETE /v1/db/connections/{name}",                      "name=victim_conn",                [N, F, F, F, A, F, N, N, N]),
    ("GET /v1/db/creds",                                      "",                                [N, F, F, F, A, F, N, N, N]),
    ("POST /v1/db/leases/lookup",                             "",                                [N, A, H, H, A, H, N, N, N]),
    ("POST /v1/db/leases/renew",                              "",                                [N, A, H, H, F, H, N, N, N]),
    ("POST /v1/db/leases/revoke",                             "",                                [N, A, H, H, A, H, N, N, N]),
    ("POST /v1/db/leases/revoke-prefix",                      "",                                [N, F, F, F, A, F, N, N, N]),
    // -- the gateway's questions: members of ssh-gateways only — not even admins (tests/gateway.rs admits the gateway)
    ("POST /v1/gateway/authorize",                            "",                                [N, F, F, F, F, F, N, N, N]),
    ("POST /v1/gateway/grants",                               "",                                [N, F, F, F, F, F, N, N, N]),
    // -- session recordings: started under one's own live grant (admins: anyone's, as the gateway);
    //    written by whoever started them or admins; read by the session's holder and admins --
    ("POST /v1/recordings",                                   "",                                [N, A, F, F, A, F, N, N, N]),
    ("GET /v1/recordings",                                    "",                                [N, A, A, A, A, A, N, N, N]),
    ("GET /v1/recordings",                                    "?active=true",                    [N, A, A, A, A, A, N, N, N]),
    ("GET /v1/recordings/{id}",                               "id=alice_recording",              [N, A, H, H, A, H, N, N, N]),
    ("GET /v1/recordings/{id}/cast",                          "id=alice_recording",              [N, A, H, H, A, H, N, N, N]),
    ("POST /v1/recordings/{id}/chunks",                       "id=append_me",                    [N, A, H, H, A, H, N, N, N]),
    ("POST /v1/recordings/{id}/end",                          "id=end_me",                       [N, A, H, H, A, H, N, N, N]),
    // -- token introspection: any signed-in caller (RFC 7662 wants the caller authenticated) --
    ("POST /v1/tokens/introspect",                            "",                                [N, A, A, A, A, A, N, N, N]),
];

/// Service principals that look like approvers of role `ops` (columns): `sc`,
/// SP `carol`, which shares its name with the user approver `user:carol`;
/// `sl`, SP `ci-lead`, a member of the approver group `leads`.
///
/// Approvers are users, on every approver path. Regression: `show` and
/// `review` once matched `user:carol` by bare name whatever the caller's kind,
/// so a machine identity could read requests it cannot approve and close the
/// post-incident review of break-glass use (recorded as `reviewed_by: "carol"`).
const LOOKALIKE_ACTORS: [&str; 2] = ["sp-carol", "sp-ci-lead"];

#[rustfmt::skip]
const LOOKALIKES: &[(&str, &str, [O; 2])] = &[
    // route                                bindings              sc sl
    ("GET /v1/requests/{id}",               "id=alice_pending",  [H, H]),
    ("POST /v1/requests/{id}/approve",      "id=approve_me",     [F, F]),
    ("POST /v1/requests/{id}/deny",         "id=deny_me",        [F, F]),
    ("POST /v1/requests/{id}/review",       "id=review_me",      [F, F]),
];

/// Routes served outside the OpenAPI document that have a row anyway.
const UNDOCUMENTED: &[&str] = &["GET /v1/openapi.json"];

/// Routes that may appear outside the OpenAPI document: once served, they need a row.
const PROBES: &[&str] = &["GET /metrics", "GET /v1/metrics"];

/// The JSON body each route gets, the same for every caller: valid, so that
/// an allowed caller gets a 2xx (`<x>` is resource `x`, `<k>` the caller).
fn body(route: &str) -> Option<&'static str> {
    Some(match route {
        "POST /v1/auth/login" => r#"{"user": "carl", "password": "<pw>"}"#,
        "POST /v1/auth/sp/login" => r#"{"client_id": "<sp_client_id>", "client_secret": "<sp_secret>"}"#,
        "POST /v1/auth/oidc/{provider}/start" => r#"{"redirect_uri": "http://127.0.0.1:9/callback"}"#,
        "POST /v1/auth/oidc/{provider}/callback" => r#"{"state": "never-issued", "code": "x"}"#,
        "POST /v1/auth/oidc/{provider}/device/poll" => r#"{"handle": "never-issued"}"#,
        "POST /v1/auth/exchange" => {
            r#"{"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": "<jwt>", "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}"#
        }
        "POST /v1/service-principals/{name}/federations" => {
            r#"{"name": "new-<k>", "issuer": "https://ci.example.com", "audience": "latch", "conditions": [{"claim": "repository", "equals": "org/app"}]}"#
        }
        "POST /v1/auth/mfa/confirm" => r#"{"code": "abcdef"}"#,
        "POST /v1/sys/test/clock" => r#"{"advance": "1s"}"#,
        "POST /v1/users" | "POST /v1/groups" | "POST /v1/service-principals" => r#"{"name": "new-<k>"}"#,
        "PUT /v1/users/{name}/password" => r#"{"password": "<pw>"}"#,
        "POST /v1/groups/{name}/members" => r#"{"kind": "user", "name": "alice"}"#,
        "POST /v1/policy/apply" => r#"{"files": <bundle>, "plan": true}"#,
        "POST /v1/policy/simulate" => r#"{"principal": "alice", "role": "ops"}"#,
        "POST /v1/policy/replay" => r#"{"since": "1d"}"#,
        "POST /v1/requests" => r#"{"role": "ops", "duration": "1h", "reason": "matrix"}"#,
        "POST /v1/requests/{id}/approve" => r#"{"comment": "ok"}"#,
        "POST /v1/requests/{id}/deny" => r#"{"reason": "not now"}"#,
        "POST /v1/requests/{id}/review" => r#"{"comment": "checked"}"#,
        "POST /v1/breakglass" => r#"{"role": "ops", "reason": "primary down"}"#,
        "POST /v1/grants/{id}/token" => r#"{"audience": "https://ops.internal"}"#,
        "POST /v1/grants/{id}/ssh" => r#"{"public_key": "<ssh_key>"}"#,
        "POST /v1/grants/{id}/revoke" => r#"{"reason": "done"}"#,
        "POST /v1/grants/{id}/db-creds" => r#"{"ttl": "10m"}"#,
        "POST /v1/db/connections" => {
            r#"{"name": "new-<k>", "host": "127.0.0.1", "port": <pg_port>, "database": "<pg_db>", "username": "<pg_admin>", "password": "<pg_admin_pw>"}"#
        }
        "POST /v1/db/leases/lookup" => r#"{"lease_id": "<alice_lease>"}"#,
        "POST /v1/db/leases/renew" => r#"{"lease_id": "<alice_lease>", "increment": "5m"}"#,
        "POST /v1/db/leases/revoke" => r#"{"lease_id": "<revoke_lease>"}"#,
        "POST /v1/db/leases/revoke-prefix" => r#"{"prefix": "database/creds/nothing-<k>/"}"#,
        "POST /v1/tokens/introspect" => r#"{"token": "<jwt>"}"#,
        "POST /v1/recordings" => {
            r#"{"grant_id": "<alice_grant>", "target": "db-1.prod.internal", "login": "deploy", "kind": "shell", "width": 80, "height": 24}"#
        }
        "POST /v1/gateway/authorize" => {
            r#"{"certificate": "ssh-ed25519-cert-v01@openssh.com AAAA", "login": "deploy", "target": "db-1.prod.internal", "upstream_key": "<ssh_key>"}"#
        }
        "POST /v1/gateway/grants" => r#"{"grant_ids": ["<alice_grant>"]}"#,
        "POST /v1/recordings/{id}/chunks" => r#"{"seq": 0, "events": "[0.5, \"o\", \"$ \"]\n"}"#,
        _ => return None,
    })
}

const ROLE: &str = r#"name = "ops"
description = "Operate production"
max_duration = "4h"
default_duration = "1h"
[approval]
required = 1
approvers = ["group:leads", "user:carol"]
[breakglass]
allowed = true
max_duration = "1h"
[credentials.token]
audiences = ["https://ops.internal"]
[credentials.ssh]
principals = ["deploy"]
[credentials.postgres]
connection = "matrix-db"
creation_statements = ["CREATE ROLE {{name}} WITH LOGIN PASSWORD {{password}} VALID UNTIL {{expiration}}"]
"#;

const POLICIES: &str = r#"@id("anyone-may-request")
permit(principal, action == Action::"request", resource);

@id("eng-auto-activate-short")
permit(principal in Group::"eng", action == Action::"activate", resource)
when { context.duration_secs <= 1800 };

@id("leads-approve")
permit(principal in Group::"leads", action == Action::"approve", resource);

@id("carol-approves")
permit(principal == User::"carol", action == Action::"approve", resource);

@id("eng-breakglass")
permit(principal in Group::"eng", action == Action::"breakglass", resource);

@id("no-machine-breakglass")
forbid(principal is ServicePrincipal, action == Action::"breakglass", resource);
"#;

/// A public key to certify (its private half was thrown away).
const SSH_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAuHzBzV4qVek1pB96sfjdk8C5XAQvJND+lHbhephlVn matrix";

struct Fixture {
    s: Server,
    /// The loopback OIDC issuer the server's sign-in provider points at.
    _issuer: Issuer,
    _tmp: tempfile::TempDir,
    /// Session per actor (None: anonymous).
    tokens: HashMap<&'static str, Option<String>>,
    /// Resources by name; per-actor ones as `name@actor`.
    res: HashMap<String, String>,
}

/// One request that must succeed; returns its JSON body.
#[track_caller]
fn call(s: &Server, method: &str, path: &str, token: &str, body: Value) -> Value {
    let body = (!body.is_null()).then_some(body);
    let (status, v) = s.http(method, path, Some(token), body.as_ref());
    assert!((200..300).contains(&status), "setup: {method} {path}: {status} {v}");
    v
}

fn str_of(v: &Value, ptr: &str) -> String {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_else(|| panic!("no {ptr} in {v}")).to_string()
}

/// A service principal; returns its client id and secret.
fn create_sp(s: &Server, admin: &str, name: &str, groups: &[&str]) -> (String, String) {
    let creds = call(s, "POST", "/v1/service-principals", admin, json!({ "name": name, "groups": groups }));
    (str_of(&creds, "/client_id"), str_of(&creds, "/client_secret"))
}

fn sp_login(s: &Server, id: &str, secret: &str) -> String {
    let (status, v) =
        s.http("POST", "/v1/auth/sp/login", None, Some(&json!({ "client_id": id, "client_secret": secret })));
    assert_eq!(status, 200, "{v}");
    str_of(&v, "/token")
}

/// `support/oidc_issuer.py` on loopback: discovery and keys, for the OIDC rows.
struct Issuer(std::process::Child);

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server whose OIDC provider `corp` is a loopback issuer started here.
fn server_with_oidc_provider() -> (Server, Issuer, tempfile::TempDir) {
    use std::io::BufRead;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oidc_issuer.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 with PyJWT and cryptography (./scripts/test installs them)");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let issuer = line.trim().strip_prefix("ISSUER=").unwrap_or_else(|| panic!("issuer said {line:?}")).to_string();
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("oidc.toml");
    std::fs::write(&conf, format!("[[oidc]]\nname = \"corp\"\nissuer = \"{issuer}\"\nclient_id = \"latch\"\n"))
        .unwrap();
    let s = Server::start_in(&tmp.path().join("data"), &["--oidc", conf.to_str().unwrap()]);
    (s, Issuer(child), tmp)
}

fn setup() -> Fixture {
    let (mut s, issuer, tmp) = server_with_oidc_provider();
    let boot = s.token.clone();
    call(&s, "PUT", "/v1/users/admin/password", &boot, json!({ "password": PW }));
    for g in ["eng", "leads"] {
        call(&s, "POST", "/v1/groups", &boot, json!({ "name": g }));
    }
    for (u, g) in [("alice", "eng"), ("bob", "eng"), ("lead", "leads"), ("dave", "eng"), ("eve", "eng"), ("fay", "eng")]
    {
        s.create_user(u, PW, &[g]);
    }
    s.create_user("carl", PW, &[]); // logs in on the public login row
    s.create_user("carol", PW, &[]); // approver of ops by name (`user:carol`)

    // Expired: eve's session works, then the clock passes its 8 h lifetime
    // (and the bootstrap token's: the admin logs in again with a password).
    let eve = s.login("eve", PW, None).unwrap();
    assert_eq!(s.http("GET", "/v1/auth/whoami", Some(&eve), None).0, 200);
    s.advance("8h1m");
    s.token = s.login("admin", PW, None).unwrap();
    let admin = s.token.clone();

    let login = |u: &str| s.login(u, PW, None).unwrap();
    let (alice, bob, lead, dave, fay) = (login("alice"), login("bob"), login("lead"), login("dave"), login("fay"));
    let (sp_id, sp_secret) = create_sp(&s, &admin, "ci", &["eng"]);
    let sp = sp_login(&s, &sp_id, &sp_secret);
    let (carol_id, carol_secret) = create_sp(&s, &admin, "carol", &[]);
    let (lead_id, lead_secret) = create_sp(&s, &admin, "ci-lead", &["leads"]);

    // Disabled and revoked: sessions that worked until then.
    for t in [&dave, &fay] {
        assert_eq!(s.http("GET", "/v1/auth/whoami", Some(t), None).0, 200);
    }
    call(&s, "POST", "/v1/users/dave/disable", &admin, Value::Null);
    assert_eq!(s.http("POST", "/v1/auth/logout", Some(&fay), None).0, 204);

    s.apply_bundle(&[("roles/ops.toml", ROLE), ("policies/main.cedar", POLICIES)]);
    let bundle = json!({ "roles/ops.toml": ROLE, "policies/main.cedar": POLICIES });

    let mut res: HashMap<String, String> = HashMap::new();
    for (k, v) in [
        ("pw", PW),
        ("sp_client_id", &sp_id),
        ("sp_secret", &sp_secret),
        ("ssh_key", SSH_KEY),
        ("bundle", &bundle.to_string()),
        ("user_kind", "user"),
        ("alice", "alice"),
        ("oidc_provider", "corp"),
    ] {
        res.insert(k.into(), v.into());
    }

    // alice's: a pending request, an active grant, a signed token under it.
    let request = |dur: &str| json!({ "role": "ops", "duration": dur, "reason": "matrix" });
    let pending = || {
        let v = call(&s, "POST", "/v1/requests", &alice, request("1h"));
        assert_eq!(v["request"]["state"], "pending", "{v}");
        str_of(&v, "/request/id")
    };
    let active_grant = || {
        let v = call(&s, "POST", "/v1/requests", &alice, request("30m"));
        assert_eq!(v["request"]["state"], "active", "{v}");
        str_of(&v, "/grant/id")
    };
    res.insert("alice_pending".into(), pending());
    let grant = active_grant();
    let jwt = call(&s, "POST", &format!("/v1/grants/{grant}/token"), &alice, Value::Null);
    res.insert("jwt".into(), str_of(&jwt, "/token"));
    res.insert("alice_grant".into(), grant.clone());

    // A target database on the test's PostgreSQL cluster, registered as
    // `matrix-db` (and one throwaway connection per caller to delete), and
    // alice's database leases under her grant: one to look up and renew, one
    // per caller to revoke.
    let pgc = common::pg::cluster();
    let pg_admin = format!("matrix_admin_{}", std::process::id());
    let pg_db = format!("matrix_{}", std::process::id());
    let pg_pw: String =
        latch_crypto::new_token("pg").unwrap().expose().chars().filter(char::is_ascii_alphanumeric).collect();
    common::secrets::note(&pg_pw);
    pgc.psql("postgres", &format!("CREATE ROLE {pg_admin} LOGIN CREATEROLE PASSWORD '{pg_pw}'"));
    pgc.psql("postgres", &format!("CREATE DATABASE {pg_db} OWNER {pg_admin}"));
    let conn = |name: &str| json!({ "name": name, "host": "127.0.0.1", "port": pgc.port, "database": pg_db, "username": pg_admin, "password": pg_pw });
    call(&s, "POST", "/v1/db/connections", &admin, conn("matrix-db"));
    for (k, v) in [
        ("pg_port", pgc.port.to_string()),
        ("pg_db", pg_db.clone()),
        ("pg_admin", pg_admin.clone()),
        ("pg_admin_pw", pg_pw.clone()),
        ("db_conn", "matrix-db".into()),
    ] {
        res.insert(k.into(), v);
    }
    let lease = || {
        let v = call(&s, "POST", &format!("/v1/grants/{grant}/db-creds"), &alice, Value::Null);
        common::secrets::note(&str_of(&v, "/password"));
        str_of(&v, "/lease_id")
    };
    res.insert("alice_lease".into(), lease());
    for k in ACTORS {
        res.insert(format!("revoke_lease@{k}"), lease());
        let name = format!("vc-{k}");
        call(&s, "POST", "/v1/db/connections", &admin, conn(&name));
        res.insert(format!("victim_conn@{k}"), name);
    }

    // Per actor: throwaway identities, and alice's requests and grants to act on.
    for k in ACTORS {
        // A service principal with a federation, to list, add to and remove from.
        let sp = format!("vf-{k}");
        call(&s, "POST", "/v1/service-principals", &admin, json!({ "name": sp }));
        let fed = json!({ "name": "fed", "issuer": "https://ci.example.com", "audience": "latch",
                          "conditions": [{ "claim": "repository", "equals": "org/app" }] });
        call(&s, "POST", &format!("/v1/service-principals/{sp}/federations"), &admin, fed);
        res.insert(format!("fed_sp@{k}"), sp);
        res.insert(format!("fed_name@{k}"), "fed".into());
        for (kind, path, prefix) in
            [("user", "/v1/users", "vu"), ("group", "/v1/groups", "vg"), ("sp", "/v1/service-principals", "vs")]
        {
            let name = format!("{prefix}-{k}");
            call(&s, "POST", path, &admin, json!({ "name": name }));
            res.insert(format!("victim_{kind}@{k}"), name);
        }
    }
    for k in ACTORS.iter().chain(&LOOKALIKE_ACTORS) {
        for what in ["approve_me", "deny_me", "cancel_me"] {
            res.insert(format!("{what}@{k}"), pending());
        }
        let bg = call(&s, "POST", "/v1/breakglass", &alice, json!({ "role": "ops", "reason": "primary down" }));
        res.insert(format!("review_me@{k}"), str_of(&bg, "/request/id"));
        res.insert(format!("revoke_me@{k}"), active_grant());
    }
    // alice's recordings (under her grant): one to read, and per actor one to append to and one to end.
    let rec_grant = res["alice_grant"].clone();
    let recording = || {
        let v = call(
            &s,
            "POST",
            "/v1/recordings",
            &alice,
            json!({ "grant_id": rec_grant, "target": "db-1", "login": "deploy", "kind": "exec",
                    "width": 100, "height": 30 }),
        );
        str_of(&v, "/id")
    };
    let shared = recording();
    call(
        &s,
        "POST",
        &format!("/v1/recordings/{shared}/chunks"),
        &alice,
        json!({ "seq": 0, "events": "[0.1, \"o\", \"ok\"]" }),
    );
    for k in ACTORS {
        for what in ["append_me", "end_me"] {
            let id = recording();
            res.insert(format!("{what}@{k}"), id);
        }
    }
    res.insert("alice_recording".into(), shared);

    let tokens = HashMap::from([
        ("anon", None),
        ("user", Some(alice)),
        ("other", Some(bob)),
        ("approver", Some(lead)),
        ("admin", Some(admin)),
        ("sp", Some(sp)),
        ("disabled", Some(dave)),
        ("expired", Some(eve)),
        ("revoked", Some(fay)),
        ("sp-carol", Some(sp_login(&s, &carol_id, &carol_secret))),
        ("sp-ci-lead", Some(sp_login(&s, &lead_id, &lead_secret))),
    ]);
    Fixture { s, _issuer: issuer, _tmp: tmp, tokens, res }
}

impl Fixture {
    fn token(&self, actor: &str) -> Option<&str> {
        self.tokens[actor].as_deref()
    }

    fn resource(&self, name: &str, actor: &str) -> String {
        self.res
            .get(&format!("{name}@{actor}"))
            .or_else(|| self.res.get(name))
            .unwrap_or_else(|| panic!("no resource {name:?} in the fixture"))
            .clone()
    }

    /// `template` with each `<name>` replaced by that resource, `<k>` by the actor.
    fn fill(&self, template: &str, actor: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(i) = rest.find('<') {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('>').map(|j| i + j).unwrap_or_else(|| panic!("unclosed < in {template}"));
            let name = &rest[i + 1..end];
            out.push_str(&if name == "k" { actor.to_string() } else { self.resource(name, actor) });
            rest = &rest[end + 1..];
        }
        out + rest
    }

    /// A new session of the same identity as `actor` (the shared one for dead sessions).
    fn fresh_token(&self, actor: &str) -> Option<String> {
        let user = match actor {
            "user" => "alice",
            "other" => "bob",
            "approver" => "lead",
            "admin" => "admin",
            "sp" => return Some(sp_login(&self.s, &self.res["sp_client_id"], &self.res["sp_secret"])),
            "anon" | "disabled" | "expired" | "revoked" => return self.tokens[actor].clone(),
            other => panic!("no fresh session for {other}"),
        };
        Some(self.s.login(user, PW, None).unwrap())
    }

    /// The concrete path of a row for `actor`, and whether it wants a fresh session.
    fn path(&self, route: &str, bindings: &str, actor: &str) -> (String, bool) {
        let mut path = route.split_once(' ').unwrap().1.to_string();
        let (mut query, mut fresh) = (String::new(), false);
        for b in bindings.split_whitespace() {
            if let Some(q) = b.strip_prefix('?') {
                query = format!("?{q}");
            } else if b == "fresh-session" {
                fresh = true;
            } else {
                let (param, name) = b.split_once('=').unwrap_or_else(|| panic!("bad binding {b:?} in {route}"));
                let hole = format!("{{{param}}}");
                assert!(path.contains(&hole), "{route}: binding {b:?} names no path parameter");
                path = path.replace(&hole, &self.resource(name, actor));
            }
        }
        assert!(!path.contains('{'), "{route}: unbound path parameter in {path}");
        (path + &query, fresh)
    }

    /// Sends every cell of `rows` as its actor; returns the observed statuses
    /// as a printable table, and a line for every cell that disagrees.
    fn run<const K: usize>(&self, rows: &[(&str, &str, [O; K])], actors: [&str; K]) -> (String, Vec<String>) {
        let width = |actor: &str| actor.len().max(3) + 1;
        let mut table = format!("{:<76}", "route bindings");
        for actor in actors {
            let _ = write!(table, "{actor:<w$}", w = width(actor));
        }
        table = table.trim_end().to_string() + "\n";
        let mut failures = Vec::new();
        for &(route, bindings, expected) in rows {
            let method = route.split_once(' ').unwrap().0;
            let mut line = format!("{:<76}", format!("{route} {bindings}"));
            for (actor, want) in actors.iter().zip(expected) {
                let (path, fresh) = self.path(route, bindings, actor);
                let token = if fresh { self.fresh_token(actor) } else { self.tokens[actor].clone() };
                let body = body(route).map(|b| self.fill(b, actor));
                let (status, _, text) = self.s.http_raw(method, &path, token.as_deref(), body.as_deref(), &[]);
                let got = classify(status, &text);
                let _ = write!(line, "{status:<w$}", w = width(actor));
                if got.as_ref() != Ok(&want) {
                    let text: String = text.chars().take(300).collect();
                    let got = got.map_or_else(|e| e, |o| format!("{o:?}"));
                    failures
                        .push(format!("{route} ({method} {path}) as {actor}: expected {want:?}, got {got}: {text}"));
                }
            }
            table.push_str(line.trim_end());
            table.push('\n');
        }
        (table, failures)
    }
}

/// The class of a response, or why it is none.
fn classify(status: u16, text: &str) -> Result<O, String> {
    match status {
        200..=299 => Ok(A),
        400 | 409 => Ok(P),
        401 => Ok(N),
        403 => Ok(F),
        404 if text.contains("no route for") => Err("404 from the router: the route is not served".into()),
        404 => Ok(H),
        other => Err(format!("status {other}, in no outcome class")),
    }
}

/// The OpenAPI document's (method, path) pairs, as `METHOD /path`.
fn documented_routes(s: &Server) -> BTreeSet<String> {
    let (status, doc) = s.http("GET", "/v1/openapi.json", None, None);
    assert_eq!(status, 200, "{doc}");
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| format!("{} {path}", m.to_uppercase())))
        .collect()
}

#[test]
fn every_route_refuses_and_admits_exactly_the_right_callers() {
    let started = Instant::now();
    let fx = setup();
    let s = &fx.s;

    // Completeness: the rows are exactly the documented routes (+ the spec itself).
    let documented = documented_routes(s);
    let rows: BTreeSet<String> = MATRIX.iter().map(|r| r.0.to_string()).collect();
    let undocumented: BTreeSet<String> = UNDOCUMENTED.iter().map(|r| r.to_string()).collect();
    let missing: Vec<&String> = documented.difference(&rows).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the authorization matrix (tests/authz_matrix.rs): {missing:?}"
    );
    let stale: Vec<&String> = rows.difference(&documented).filter(|r| !undocumented.contains(*r)).collect();
    assert!(stale.is_empty(), "matrix rows for routes the OpenAPI document does not list: {stale:?}");
    for probe in PROBES {
        let (m, p) = probe.split_once(' ').unwrap();
        let (_, _, text) = s.http_raw(m, p, None, None, &[]);
        assert!(
            text.contains("no route for") || rows.contains(*probe),
            "{probe} is served but has no row in the authorization matrix"
        );
    }

    let (table, mut failures) = fx.run(MATRIX, ACTORS);
    let (lookalikes, more) = fx.run(LOOKALIKES, LOOKALIKE_ACTORS);
    failures.extend(more);
    println!("{table}\n{lookalikes}");
    let cells = MATRIX.len() * ACTORS.len() + LOOKALIKES.len() * LOOKALIKE_ACTORS.len();
    assert!(
        failures.is_empty(),
        "{} of {cells} cells disagree with the matrix:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Lists are filtered, not refused: each caller sees only what is theirs.
    let ids = |actor: &str, path: &str, key: &str| -> Vec<String> {
        let (status, v) = s.http("GET", path, fx.token(actor), None);
        assert_eq!(status, 200, "{path} as {actor}: {v}");
        v[key].as_array().unwrap().iter().map(|r| str_of(r, "/id")).collect()
    };
    let (alice_req, alice_grant) = (&fx.res["alice_pending"], &fx.res["alice_grant"]);
    assert!(ids("user", "/v1/requests", "requests").contains(alice_req));
    assert!(ids("user", "/v1/grants", "grants").contains(alice_grant));
    for who in ["other", "approver", "sp", "sp-carol", "sp-ci-lead"] {
        assert!(!ids(who, "/v1/requests", "requests").contains(alice_req), "{who} lists alice's request");
        assert!(!ids(who, "/v1/grants", "grants").contains(alice_grant), "{who} lists alice's grant");
    }
    assert!(ids("admin", "/v1/requests", "requests").contains(alice_req));
    assert!(ids("admin", "/v1/grants?all=true", "grants").contains(alice_grant));
    assert!(ids("approver", "/v1/requests?to_review=true", "requests").contains(alice_req));
    for who in ["user", "other", "admin", "sp", "sp-carol", "sp-ci-lead"] {
        assert!(!ids(who, "/v1/requests?to_review=true", "requests").contains(alice_req), "{who} may review it");
    }
    println!(
        "{} documented routes, {} rows, {cells} cells, {:.1} s",
        documented.len(),
        MATRIX.len(),
        started.elapsed().as_secs_f64()
    );
}
