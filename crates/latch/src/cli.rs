//! Command-line grammar.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "latch", version, about = "Just-in-time privileged access", propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone)]
pub struct Global {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Server URL.
    #[arg(long, global = true, env = "LATCH_ADDR", default_value = "http://127.0.0.1:8200")]
    pub addr: String,
    /// Session token (from `latch login` or the server's bootstrap line).
    #[arg(long, global = true, env = "LATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's TLS certificate.
    #[arg(long, global = true, env = "LATCH_CACERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the latch server.
    Server(ServerArgs),
    /// Operate the store behind a server.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// SSH certificates under your grants, the CA and the revocation list.
    #[command(subcommand)]
    Ssh(SshCmd),
    /// Dynamic PostgreSQL credentials: target connections (administrators),
    /// logins under your grants, and their leases.
    #[command(subcommand)]
    Db(DbCmd),
    /// Log in and print a session token as LATCH_TOKEN=….
    Login(LoginArgs),
    /// Trade an external OIDC token (a CI job's) for a latch session and, with
    /// --role, for a latch token under an auto-approved grant, in one step.
    Exchange(ExchangeArgs),
    /// Revoke the current session token.
    Logout,
    /// Show who the current token belongs to.
    Whoami,
    /// Multi-factor authentication for the current user.
    #[command(subcommand)]
    Mfa(MfaCmd),
    /// Manage users (administrators).
    #[command(subcommand)]
    User(UserCmd),
    /// Manage groups and their members (administrators).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Manage service principals, the identities of pipelines and services (administrators).
    #[command(subcommand)]
    Sp(SpCmd),
    /// Apply a policy directory (roles/*.toml, policies/*.cedar).
    Apply {
        dir: PathBuf,
        /// Show what would change, change nothing.
        #[arg(long)]
        plan: bool,
    },
    /// List the roles in force.
    Roles,
    /// Inspect, simulate and replay policy decisions.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Ask for a privileged role.
    Request(RequestArgs),
    /// List access requests.
    Requests {
        /// pending, active, expired, revoked, denied, cancelled, timed_out
        #[arg(long)]
        state: Option<String>,
        /// Only mine.
        #[arg(long, conflicts_with = "to_review")]
        mine: bool,
        /// Pending requests I may approve.
        #[arg(long)]
        to_review: bool,
    },
    /// Show one request.
    Show { id: String },
    /// Approve a pending request.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Deny a pending request.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Cancel your pending request.
    Cancel { id: String },
    /// List grants (yours, or everyone's with --all).
    Grants {
        /// Only mine (the default).
        #[arg(long, conflicts_with = "all")]
        mine: bool,
        #[arg(long)]
        all: bool,
        /// Only grants in force now.
        #[arg(long)]
        active: bool,
    },
    /// Revoke a grant and every credential issued under it.
    Revoke {
        grant_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Issue a signed token (EdDSA JWT) under one of your grants.
    Token {
        #[arg(long)]
        grant: String,
        #[arg(long)]
        audience: Option<String>,
        /// Lifetime, e.g. 15m (never past the grant's end).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Ask latch whether a token is active (RFC 7662 introspection).
    Introspect {
        /// The signed token to ask about. Its own argument id: named `token`,
        /// it would also set the global `--token`, and the call would go out
        /// with the introspected token as the caller's session.
        #[arg(id = "introspected", value_name = "TOKEN")]
        token: String,
    },
    /// Emergency access: active at once, flagged, alerted, reviewed afterwards.
    Breakglass {
        role: String,
        #[arg(long)]
        reason: String,
        #[arg(long = "for")]
        duration: Option<String>,
        #[arg(long, default_value = "")]
        ticket: String,
    },
    /// Record the post-incident review of a break-glass use.
    Review {
        id: String,
        #[arg(long)]
        comment: String,
    },
    /// Read and verify the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Run the recording SSH gateway (needs the token of a service principal in ssh-gateways).
    Gateway(GatewayArgs),
    /// Recorded SSH sessions: list them (yours, or everyone's for administrators), show, export.
    Sessions(SessionsArgs),
    /// Play a recorded session in this terminal, with its timing.
    Replay {
        /// The recording (rec_…).
        id: String,
        /// Playback speed: 2 is twice as fast; 0 prints everything at once.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
    },
    /// Service-level indicators M1–M6 (recorded access, time to grant, JIT share,
    /// long-lived credentials, break-glass rate, time to revoke) against their
    /// objectives (administrators and members of metrics-readers).
    Slo {
        /// How far back from now, e.g. 30d, 7d, 24h (at most 366d).
        #[arg(long, default_value = "30d")]
        window: String,
    },
    /// Every long-lived privileged credential (service-principal secrets,
    /// signing and master keys, stored secrets) with its age: the guide's M4.
    Inventory,
    /// Measure latch's throughput on this machine.
    #[command(subcommand)]
    Bench(BenchCmd),
}

#[derive(Args)]
pub struct ServerArgs {
    /// Development mode: embedded SQLite, prints a bootstrap admin token. Not for production.
    #[arg(long, conflicts_with = "config")]
    pub dev: bool,
    /// Configuration file for real deployments.
    #[arg(long, value_name = "latch.toml", required_unless_present = "dev")]
    pub config: Option<PathBuf>,
    /// Address to listen on (dev mode).
    #[arg(long, default_value = "127.0.0.1:8200", requires = "dev")]
    pub listen: SocketAddr,
    /// Data directory (dev mode); a fresh temporary directory when omitted.
    #[arg(long, requires = "dev")]
    pub data: Option<PathBuf>,
    /// Dev mode only: serve plain HTTP on a non-loopback address.
    #[arg(long, requires = "dev")]
    pub insecure_allow_plain_http: bool,
    /// Dev mode: POST request and break-glass notifications to this URL.
    #[arg(long, requires = "dev")]
    pub webhook: Option<String>,
    /// Dev mode: pending requests time out after this long.
    #[arg(long, default_value = "24h", requires = "dev")]
    pub request_timeout: String,
    /// Dev mode only: let administrators move the server's clock forward (for tests).
    #[arg(long, requires = "dev", hide = true)]
    pub test_clock: bool,
    /// Dev mode only: do not initialize and unseal the seal automatically
    /// (to exercise `latch operator init` and `unseal`).
    #[arg(long, requires = "dev", hide = true)]
    pub dev_sealed: bool,
    /// Dev mode only: write a signed audit checkpoint this often (for tests; default 1m).
    #[arg(long, default_value = "1m", requires = "dev", hide = true)]
    pub checkpoint_interval: String,
    /// Dev mode: serve GET /metrics without a token (otherwise: administrators
    /// and members of group metrics-readers).
    #[arg(long, requires = "dev")]
    pub metrics_public: bool,
    /// Dev mode: export the audit log continuously, KIND=TARGET (repeatable):
    /// jsonl=PATH, ocsf=PATH, syslog-tcp=HOST:PORT, syslog-udp=HOST:PORT, webhook=URL, ocsf-webhook=URL.
    #[arg(long, value_name = "KIND=TARGET", requires = "dev")]
    pub siem: Vec<String>,
    /// Dev mode: how often built-in alerts are evaluated.
    #[arg(long, default_value = "30s", requires = "dev", hide = true)]
    pub alert_interval: String,
    /// Dev mode: a request pending longer than this raises an alert.
    #[arg(long, default_value = "1h", requires = "dev")]
    pub approval_sla: String,
    /// Dev mode: OpenID Connect providers people sign in with, from a TOML file of [[oidc]] entries.
    #[arg(long, value_name = "FILE", requires = "dev")]
    pub oidc: Option<PathBuf>,
    /// Dev mode: keep state in PostgreSQL (postgres://…) instead of SQLite in the data directory.
    #[arg(long, env = "LATCH_STORAGE", value_name = "postgres://…", requires = "dev")]
    pub storage: Option<String>,
}

#[derive(Subcommand)]
pub enum SshCmd {
    /// Print the CA public key, as `TrustedUserCAKeys` reads it.
    Ca,
    /// Sign your public key under one of your grants; writes KEY-cert.pub beside KEY.pub.
    Sign {
        #[arg(long)]
        grant: String,
        /// The public key file (e.g. ~/.ssh/id_ed25519.pub).
        #[arg(long)]
        pubkey: PathBuf,
        /// A login name to include (repeat); all of the role's when omitted.
        #[arg(long = "principal")]
        principals: Vec<String>,
        /// Validity, e.g. 15m (never past the grant's end).
        #[arg(long)]
        ttl: Option<String>,
        /// Print the certificate instead of writing the -cert.pub file.
        #[arg(long)]
        stdout: bool,
    },
    /// Make a fresh key pair and get it signed: writes KEY, KEY.pub and KEY-cert.pub for `ssh -i KEY`.
    Login {
        #[arg(long)]
        grant: String,
        /// Where to write the key (default: ~/.ssh/latch_GRANT).
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long = "principal")]
        principals: Vec<String>,
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Write the Key Revocation List to FILE for sshd's `RevokedKeys` (sshd re-reads it on every login).
    Krl {
        #[arg(long)]
        out: PathBuf,
        /// Keep FILE current: fetch again every --interval and replace it when it changed.
        #[arg(long)]
        watch: bool,
        /// Seconds between fetches with --watch.
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
}

#[derive(Subcommand)]
pub enum DbCmd {
    /// Register, show or remove a target database (administrators).
    #[command(subcommand)]
    Connection(DbConnectionCmd),
    /// List the registered target databases (administrators).
    Connections,
    /// A PostgreSQL login under one of your grants (`--grant ID`), or `list`
    /// every credential with its revocation state (administrators).
    Creds(DbCredsArgs),
    /// Look up, renew or revoke a lease (`database/creds/ROLE/ID`).
    #[command(subcommand)]
    Lease(DbLeaseCmd),
}

#[derive(Subcommand)]
pub enum DbConnectionCmd {
    /// Register a PostgreSQL server latch creates roles on; latch connects once to check it.
    Add {
        name: String,
        /// postgres://USER@HOST:PORT/DB[?sslmode=disable|prefer|require|verify-full], without the password.
        #[arg(long)]
        url: String,
        /// File holding the user's password (`-`: stdin); stored sealed, never shown.
        #[arg(long)]
        password_file: PathBuf,
        /// PEM file of the CA that signed the server's certificate (TLS is always
        /// verified; without this, against the public roots).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
    },
    /// Show one connection (never its password).
    Show { name: String },
    /// Remove a connection (refused while credentials on it are not yet revoked).
    Rm { name: String },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DbCredsArgs {
    /// The grant to issue under (yours, active, of a role with [credentials.postgres]).
    #[arg(long)]
    pub grant: Option<String>,
    /// Lease duration, e.g. 15m (never past the grant's end; default: until it ends).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Print the credential as JSON (like `-o json`).
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: Option<DbCredsCmd>,
}

#[derive(Subcommand)]
pub enum DbCredsCmd {
    /// Every credential with its state, failed revocation attempts and last error (administrators).
    List {
        /// Only in this state: issuing, active, revoking, revoked.
        #[arg(long)]
        state: Option<String>,
        /// Only under this grant.
        #[arg(long)]
        grant: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum DbLeaseCmd {
    /// Issue and expire times, seconds left, whether it renews.
    Show { lease_id: String },
    /// Extend the lease (and the role's VALID UNTIL), never past the grant's end.
    Renew {
        lease_id: String,
        /// From now, e.g. 30m (default: until the grant ends).
        #[arg(long)]
        increment: Option<String>,
    },
    /// Revoke the lease: the role's sessions are ended and the role dropped.
    Revoke {
        lease_id: String,
        /// Wait (up to 30 s) until the role is dropped.
        #[arg(long)]
        wait: bool,
    },
    /// Revoke every lease whose id starts with PREFIX, e.g. database/creds/ROLE/ (administrators).
    RevokePrefix { prefix: String },
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SessionsArgs {
    /// Only sessions still running.
    #[arg(long)]
    pub active: bool,
    #[command(subcommand)]
    pub cmd: Option<SessionsCmd>,
}

#[derive(Subcommand)]
pub enum SessionsCmd {
    /// Show one recording's metadata.
    Show { id: String },
    /// Write the recording as an asciicast v2 file (plays with `asciinema play`), to stdout or --out.
    Export {
        id: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum OperatorCmd {
    /// Apply pending schema migrations to a PostgreSQL database and exit
    /// (servers also migrate on start; this lets you do it ahead of a rollout).
    Migrate {
        /// The database, postgres://…
        #[arg(long, env = "LATCH_STORAGE", value_name = "postgres://…")]
        storage: String,
    },
    /// Initialize the seal: create the master keyring and print the unseal
    /// key's shares, once. Keep each share with a different person.
    Init {
        /// How many shares to split the unseal key into.
        #[arg(long, default_value_t = 5)]
        shares: usize,
        /// How many shares unseal a server.
        #[arg(long, default_value_t = 3)]
        threshold: usize,
    },
    /// Submit one unseal share (read from stdin when not given); the server
    /// unseals when enough shares are in.
    Unseal {
        /// The share, hex or base64 as `init` printed it. Prefer stdin: an
        /// argument shows in the shell history and the process list.
        share: Option<String>,
        /// Forget the shares submitted so far.
        #[arg(long)]
        reset: bool,
    },
    /// Seal this server: secrets are unavailable until it is unsealed again.
    Seal,
    /// Whether the server is initialized and sealed, and the unseal progress.
    Status,
    /// Rotate the master key: new secrets are wrapped with a new version at
    /// once, and existing data keys are re-wrapped in the background.
    RotateMaster,
}

#[derive(Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(long, conflicts_with = "sp", required_unless_present_any = ["sp", "oidc"])]
    pub user: Option<String>,
    /// Sign in through this OpenID Connect provider instead. When the
    /// provider offers the device authorization grant, latch prints a URL and
    /// a code to enter there (on any device) and waits; otherwise it prints a
    /// URL to open in a browser here and waits on a loopback port.
    #[arg(long, value_name = "PROVIDER", conflicts_with_all = ["user", "sp", "password_stdin", "totp"])]
    pub oidc: Option<String>,
    /// With --oidc: give up waiting for the browser after this long.
    #[arg(long, default_value = "5m", requires = "oidc")]
    pub timeout: String,
    /// With --oidc: use the device authorization grant (fails if the provider lacks it).
    #[arg(long, requires = "oidc", conflicts_with = "no_device")]
    pub device: bool,
    /// With --oidc: use the browser redirect to a loopback port, even if the provider offers the device grant.
    #[arg(long, requires = "oidc")]
    pub no_device: bool,
    /// Service principal client id; the secret is read from stdin.
    #[arg(long)]
    pub sp: Option<String>,
    /// Read the password (or client secret) from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Current TOTP code, when MFA is enrolled.
    #[arg(long)]
    pub totp: Option<String>,
}

#[derive(Args)]
pub struct ExchangeArgs {
    /// File holding the external JWT, e.g. the CI job's OIDC ID token (`-`: stdin).
    #[arg(long, value_name = "FILE")]
    pub token_file: PathBuf,
    /// Request this role (policy must auto-approve it for the service
    /// principal) and print a signed latch token under the grant. Without
    /// it, print the session token as LATCH_TOKEN=….
    #[arg(long)]
    pub role: Option<String>,
    /// How long the grant (and the token) should last, e.g. 15m (the role's default when omitted).
    #[arg(long = "for", requires = "role")]
    pub duration: Option<String>,
    /// Reason recorded with the request.
    #[arg(long, default_value = "latch exchange", requires = "role")]
    pub reason: String,
    #[arg(long, default_value = "", requires = "role")]
    pub ticket: String,
    /// Audience of the latch token: one of the role's (its first when omitted).
    #[arg(long, requires = "role")]
    pub audience: Option<String>,
    /// The service principal to become, when the token satisfies federations of several.
    #[arg(long)]
    pub sp: Option<String>,
}

#[derive(Args)]
pub struct RequestArgs {
    pub role: String,
    /// How long, e.g. 30m (the role's default when omitted).
    #[arg(long = "for")]
    pub duration: Option<String>,
    #[arg(long, default_value = "")]
    pub reason: String,
    #[arg(long, default_value = "")]
    pub ticket: String,
    /// Block until the request is decided, then print the grant.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long.
    #[arg(long, default_value = "1h", requires = "wait")]
    pub wait_timeout: String,
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Show the policy version, roles and policy ids in force.
    Show,
    /// Would this request be allowed, and why?
    Simulate {
        /// The user (or service principal with --sp) to decide for.
        #[arg(long = "as")]
        principal: String,
        #[arg(long)]
        sp: bool,
        #[arg(long)]
        role: String,
        #[arg(long = "for")]
        duration: Option<String>,
        /// Context values: mfa=true, ticket=INC-1, reason=…, source_ip=10.0.0.1, hour=3, weekday=sat (repeatable).
        #[arg(long = "context", value_name = "KEY=VALUE")]
        context: Vec<String>,
        /// Decide under the bundle in this directory instead of the one in force.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Re-evaluate past requests under the current (or a proposed) policy and list changed decisions.
    Replay {
        /// How far back, e.g. 7d.
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum MfaCmd {
    /// Start TOTP enrollment: prints an otpauth:// URI for an authenticator app.
    Enroll,
    /// Finish enrollment with a code from the authenticator.
    Confirm { code: String },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user.
    Create {
        name: String,
        /// Add to this group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Read an initial password from stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Show one user.
    Show { name: String },
    /// Disable a user: their sessions stop working at once.
    Disable { name: String },
    /// Enable a disabled user.
    Enable { name: String },
    /// Delete a user and revoke their sessions.
    Delete { name: String },
    /// Set a user's password (read from stdin).
    SetPassword { name: String },
    /// Remove a user's MFA enrollment (after a lost device).
    ResetMfa { name: String },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum MemberKind {
    User,
    Sp,
}

#[derive(Subcommand)]
pub enum GroupCmd {
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Show {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Add a user (or, with --kind sp, a service principal) to a group.
    Add {
        group: String,
        member: String,
        #[arg(long, value_enum, default_value_t = MemberKind::User)]
        kind: MemberKind,
    },
    /// Remove a member from a group.
    Remove {
        group: String,
        member: String,
        #[arg(long, value_enum, default_value_t = MemberKind::User)]
        kind: MemberKind,
    },
}

#[derive(Subcommand)]
pub enum SpCmd {
    /// Create a service principal; prints its client id and secret once.
    Create {
        name: String,
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// How long each secret is valid, e.g. 30d, or `never`
        /// (default: the server's [auth] sp_secret_lifetime).
        #[arg(long)]
        secret_lifetime: Option<String>,
    },
    List,
    Show {
        name: String,
    },
    /// Issue a new secret (printed once) while the previous one keeps working
    /// for --overlap, so a pipeline can switch without downtime.
    Rotate {
        name: String,
        /// How long the previous secret stays valid (0s: at once, revoking its sessions).
        #[arg(long, default_value = "1h")]
        overlap: String,
        /// Change the principal's secret lifetime (e.g. 30d, `never`, `default`).
        #[arg(long)]
        secret_lifetime: Option<String>,
    },
    /// Replace the secret at once (the old one and its sessions stop working), as after a leak.
    RotateSecret {
        name: String,
    },
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
    Delete {
        name: String,
    },
    /// Trust an external OIDC issuer (a CI system) to vouch for this service
    /// principal: a token from ISSUER for AUDIENCE whose claims meet every
    /// condition can be exchanged for its session (`latch exchange`).
    Federate {
        name: String,
        /// The issuer URL, exactly as in the tokens' iss (https; http only for loopback).
        #[arg(long)]
        issuer: String,
        /// The audience the tokens must carry (their aud).
        #[arg(long)]
        audience: String,
        /// The claim must be exactly VALUE, e.g. repository=org/app (repeatable; all must hold).
        #[arg(long = "claim", value_name = "CLAIM=VALUE")]
        claims: Vec<String>,
        /// The claim must match PATTERN, where * is any run of characters other than /,
        /// e.g. ref=refs/tags/v* (repeatable).
        #[arg(long = "claim-glob", value_name = "CLAIM=PATTERN")]
        globs: Vec<String>,
        /// Name of this federation (a principal may have several).
        #[arg(long = "name", default_value = "default")]
        federation: String,
    },
    /// List a service principal's federations.
    Federations {
        name: String,
    },
    /// Remove a federation: its tokens are no longer exchanged.
    Unfederate {
        name: String,
        #[arg(long = "name", default_value = "default")]
        federation: String,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// List events.
    List {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Print new events as they are appended.
    Tail {
        /// Keep following (like tail -f).
        #[arg(short = 'f', long)]
        follow: bool,
        /// Start after this sequence number (default: the last 10 events).
        #[arg(long)]
        since: Option<i64>,
    },
    /// Recompute the hash chain and check the signed checkpoints.
    Verify {
        /// Read the data directory directly instead of asking a server.
        #[arg(long, conflicts_with = "export")]
        data: Option<PathBuf>,
        /// Check an exported stream instead (JSON lines or OCSF, as a SIEM
        /// received them: duplicates allowed, no server needed).
        #[arg(long)]
        export: Option<PathBuf>,
    },
    /// Export events once, to stdout: JSON lines, OCSF or RFC 5424 syslog lines.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Ocsf,
    Syslog,
}

#[derive(Subcommand)]
pub enum BenchCmd {
    /// In-process policy decision latency over 100 roles and 1,000 principals.
    Policy {
        #[arg(long, default_value_t = 100)]
        roles: usize,
        #[arg(long, default_value_t = 1000)]
        principals: usize,
        #[arg(long, default_value_t = 200_000)]
        decisions: usize,
    },
    /// End to end over HTTP against a fresh dev server this command starts:
    /// auto-approved request + token issue, then introspection vs health.
    Http {
        /// Auto-approved request + token pairs to run.
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Seconds to run each of the introspection and health loads.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// KV v2 writes then reads over HTTP against any server with Vault's API
    /// (latch or OpenBao), with the same client for both.
    Kv {
        /// The server, e.g. http://127.0.0.1:8200.
        #[arg(long, env = "VAULT_ADDR")]
        vault_addr: String,
        /// A token that may mount engines and write secrets.
        #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
        vault_token: String,
        /// The engine to (re)create for the run.
        #[arg(long, default_value = "bench-kv")]
        mount: String,
        /// Writes, then as many reads.
        #[arg(long, default_value_t = 5_000)]
        ops: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// SSH certificate signing: in process, then over HTTP against a fresh dev server.
    Ssh {
        #[arg(long, default_value_t = 20_000)]
        certs: usize,
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
    },
    /// Several nodes on one PostgreSQL database: request + token throughput
    /// with 1 node, then with N nodes (clients spread over them), and how fast
    /// a revocation on one node reaches another. Creates (and drops) its own
    /// databases through the given connection.
    Cluster {
        /// A PostgreSQL URL whose user may create databases, postgres://…
        #[arg(long, env = "LATCH_STORAGE")]
        storage: String,
        /// Nodes in the multi-node run.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Request + token pairs per run.
        #[arg(long, default_value_t = 3_000)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Revocation propagation trials.
        #[arg(long, default_value_t = 200)]
        trials: usize,
    },
    /// Durable audit appends per second with concurrent writers (group commit),
    /// then `audit verify` over the resulting log.
    Audit {
        /// Events to append.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Concurrent writers.
        #[arg(long, default_value_t = 64)]
        writers: u64,
        /// Also build a log of this many events (batched) and time verifying it.
        #[arg(long, default_value_t = 1_000_000)]
        verify_events: u64,
        /// Where to put the scratch database (default: a temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct GatewayArgs {
    /// Address to serve SSH on.
    #[arg(long, default_value = "127.0.0.1:2222")]
    pub listen: SocketAddr,
    /// The gateway's host key (OpenSSH private key); made on first start.
    #[arg(long, default_value = "latch-gateway/host_ed25519")]
    pub host_key: PathBuf,
    /// Where recordings wait until the server has stored them.
    #[arg(long, default_value = "latch-gateway/spool")]
    pub spool: PathBuf,
    /// Client id of the gateway's service principal (in the ssh-gateways group).
    #[arg(long, env = "LATCH_GATEWAY_CLIENT_ID")]
    pub client_id: Option<String>,
    /// File holding that service principal's secret.
    #[arg(long, env = "LATCH_GATEWAY_SECRET_FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// OpenSSH known_hosts file with the targets' host keys.
    #[arg(long)]
    pub known_hosts: Option<PathBuf>,
    /// Do not check the targets' host keys (labs only: a network attacker could read sessions).
    #[arg(long)]
    pub insecure_accept_any_host_key: bool,
    /// How often to ask the server whether live sessions' grants have ended, in milliseconds.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub poll_interval_ms: u64,
    /// How long sessions go on while the server cannot be reached.
    #[arg(long, default_value = "5m")]
    pub max_offline: String,
    /// Threads relaying sessions, each connection on one of them (default: one per CPU).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `latch introspect JWT` asks with the caller's session, not with the JWT.
    #[test]
    fn introspect_keeps_the_session_token_apart_from_the_token_asked_about() {
        let cli = Cli::try_parse_from(["latch", "--token", "lts_session", "introspect", "eyJ.x.y"]);
        let Ok(cli) = cli else { panic!("does not parse") };
        assert_eq!(cli.global.token.as_deref(), Some("lts_session"));
        match cli.command {
            Command::Introspect { token } => assert_eq!(token, "eyJ.x.y"),
            _ => panic!("not introspect"),
        }
    }
}
