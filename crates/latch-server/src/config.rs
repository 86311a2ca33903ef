//! `latch.toml`: parsed strictly, validated fully, with errors that name the
//! key and line. Unknown keys are errors, so a typo cannot silently fall back
//! to a default.
//!
//! ```toml
//! listen = "0.0.0.0:8200"
//! data_dir = "/var/lib/latch"
//! log_level = "info"          # error | warn | info | debug | trace
//! log_format = "json"         # json | text
//!
//! [tls]
//! cert = "/etc/latch/tls.crt"
//! key = "/etc/latch/tls.key"
//! # allow_plain_http = true   # only to serve plain HTTP on a non-loopback address
//!
//! [auth]
//! session_ttl = "8h"
//! service_principal_session_ttl = "1h"
//! max_failures_per_identity = 5
//! max_failures_per_source = 20
//! failure_window = "5m"
//! exchange_session_ttl = "15m" # sessions from token exchange (POST /v1/auth/exchange)
//! sp_secret_lifetime = "never"  # service-principal secrets expire after this (e.g. "90d"), unless the principal sets its own
//! max_exchange_refusals_per_source = 30   # refused exchanges per failure_window, then 429
//! max_oidc_starts_per_source = 30         # anonymous OIDC sign-in starts per failure_window, then 429
//!
//! [audit]
//! checkpoint_interval = "1m"
//!
//! [requests]
//! timeout = "24h"             # pending requests time out after this
//!
//! [notify]
//! webhook = "https://hooks.example.com/latch"
//!
//! [metrics]
//! public = false              # true: GET /metrics without a token
//!
//! [alerts]                    # built-in alerts: audit events alert.raise, sent to the webhook
//! interval = "30s"
//! approval_sla = "1h"         # a request pending longer raises approval-waiting
//! user_denies = 5             # denies of one user within 5 minutes
//! cooldown = "1h"             # the same alert (rule, user, target) at most once per cooldown
//! sp_secret_warning = "14d"   # a service-principal secret expiring within this raises sp-secret-expiring
//!
//! [[oidc]]                    # identity providers people sign in with: see `oidc_providers`
//! [[siem]]                    # continuous audit export; as many as needed
//! name = "soc"                # names the sink's cursor
//! kind = "syslog-tcp"         # jsonl | ocsf | syslog-tcp | syslog-udp | webhook | ocsf-webhook
//! address = "10.0.0.5:6514"   # syslog; files take path (max_bytes, keep), webhooks url
//!
//! [slo]                       # targets of GET /v1/slo and `latch slo` (these are the defaults)
//! recorded_target = 0.99      # M1: share of privileged SSH access recorded, at least
//! time_to_grant_auto_p99 = "5s"   # M2: automatic activations, p99 at most
//! time_to_grant_human_p50 = "5m"  # M2: human approvals, median at most
//! jit_target = 0.90           # M3: share of privileged operations with JIT credentials, at least
//! long_lived_max = 4          # M4: long-lived privileged credentials, at most
//! sp_secret_max_age = "90d"   # M4: service-principal secrets older than this count
//! signing_key_max_age = "365d"    # M4: SSH CA and token signing keys older than this count
//! static_secret_max_age = "90d"   # M4: stored secrets whose value is older than this count
//! credential_max_lifetime = "24h" # M4: tokens and SSH certificates valid longer than this count
//! breakglass_budget = 2       # M5: break-glass uses allowed per breakglass_period
//! breakglass_period = "30d"
//! time_to_revoke_p99 = "60s"  # M6: p99 at most
//! ```
//!
//! `public_url = "https://latch.example.com"` (top level) sets the issuer of
//! tokens; it defaults to the listen address.
//!
//! `storage = "postgres://latch@db.internal/latch"` (top level) keeps state in
//! PostgreSQL instead of `data_dir/latch.db`, so that several nodes can share
//! it; `[postgres] max_connections` and `connect_timeout` tune the pool. The
//! data directory then holds only this node's key files (copy them to every
//! node, as with TLS keys).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use latch_core::parse_duration;
use latch_core::ratelimit::Limit;
use latch_store::PgOptions;
use serde::Deserialize;

use crate::state::{AuthSettings, JitSettings, MetricsSettings, SloSettings};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    data_dir: PathBuf,
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default = "default_log_format")]
    log_format: String,
    tls: Option<RawTls>,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    audit: RawAudit,
    /// The URL clients use to reach this server (the `iss` of tokens).
    public_url: Option<String>,
    #[serde(default)]
    requests: RawRequests,
    #[serde(default)]
    notify: RawNotify,
    storage: Option<String>,
    #[serde(default)]
    postgres: RawPostgres,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    siem: Vec<RawSiem>,
    #[serde(default)]
    oidc: Vec<crate::oidc_providers::RawProvider>,
    #[serde(default)]
    alerts: RawAlerts,
    #[serde(default)]
    slo: RawSlo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    interval: Option<String>,
    approval_sla: Option<String>,
    user_denies: Option<usize>,
    cooldown: Option<String>,
    sp_secret_warning: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSiem {
    name: String,
    kind: String,
    address: Option<String>,
    path: Option<PathBuf>,
    url: Option<String>,
    max_bytes: Option<u64>,
    keep: Option<u32>,
}

impl RawSiem {
    fn sink(&self) -> Result<crate::siem::SiemSink, String> {
        use crate::siem::{DEFAULT_KEEP, DEFAULT_MAX_BYTES, Format, SiemSink, SinkKind};
        let need = |v: &Option<String>, key: &str| {
            v.clone().ok_or_else(|| format!("[[siem]] {}: kind {} needs {key}", self.name, self.kind))
        };
        let file = |format| -> Result<SinkKind, String> {
            let path =
                self.path.clone().ok_or_else(|| format!("[[siem]] {}: kind {} needs path", self.name, self.kind))?;
            Ok(SinkKind::File {
                path,
                max_bytes: self.max_bytes.unwrap_or(DEFAULT_MAX_BYTES),
                keep: self.keep.unwrap_or(DEFAULT_KEEP),
                format,
            })
        };
        let kind = match self.kind.as_str() {
            "jsonl" => file(Format::Json)?,
            "ocsf" => file(Format::Ocsf)?,
            "syslog-tcp" => SinkKind::SyslogTcp { address: need(&self.address, "address")? },
            "syslog-udp" => SinkKind::SyslogUdp { address: need(&self.address, "address")? },
            "webhook" => SinkKind::Webhook { url: need(&self.url, "url")?, format: Format::Json },
            "ocsf-webhook" => SinkKind::Webhook { url: need(&self.url, "url")?, format: Format::Ocsf },
            other => {
                return Err(format!(
                    "[[siem]] {}: unknown kind {other:?}: use jsonl, ocsf, syslog-tcp, syslog-udp, webhook or ocsf-webhook",
                    self.name
                ));
            }
        };
        let sink = SiemSink { name: self.name.clone(), kind };
        sink.validate()?;
        Ok(sink)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    recorded_target: Option<f64>,
    time_to_grant_auto_p99: Option<String>,
    time_to_grant_human_p50: Option<String>,
    jit_target: Option<f64>,
    long_lived_max: Option<u64>,
    sp_secret_max_age: Option<String>,
    signing_key_max_age: Option<String>,
    static_secret_max_age: Option<String>,
    credential_max_lifetime: Option<String>,
    breakglass_budget: Option<u64>,
    breakglass_period: Option<String>,
    time_to_revoke_p99: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    #[serde(default)]
    public: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    max_connections: Option<usize>,
    connect_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequests {
    timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    webhook: Option<String>,
}

fn default_log_level() -> String {
    "info".into()
}
fn default_log_format() -> String {
    "json".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    #[serde(default)]
    allow_plain_http: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    session_ttl: Option<String>,
    service_principal_session_ttl: Option<String>,
    max_failures_per_identity: Option<usize>,
    max_failures_per_source: Option<usize>,
    failure_window: Option<String>,
    exchange_session_ttl: Option<String>,
    sp_secret_lifetime: Option<String>,
    max_exchange_refusals_per_source: Option<usize>,
    max_oidc_starts_per_source: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_interval: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where state lives.
#[derive(Clone, Debug)]
pub enum Storage {
    /// `data_dir/latch.db`.
    Sqlite,
    Postgres {
        dsn: String,
        options: PgOptions,
    },
}

impl Storage {
    /// `"postgres://…"` (or `postgresql://…`) selects PostgreSQL; anything else is refused.
    pub fn from_dsn(dsn: &str, options: PgOptions) -> Result<Storage, String> {
        if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
            Ok(Storage::Postgres { dsn: dsn.to_string(), options })
        } else {
            Err("storage must be a PostgreSQL URL such as postgres://user@host:5432/latch \
                 (leave it out to use SQLite in data_dir)"
                .into())
        }
    }
}

/// A validated server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log_level: String,
    pub log_format: LogFormat,
    pub tls: Option<TlsFiles>,
    pub allow_plain_http: bool,
    pub auth: AuthSettings,
    pub checkpoint_interval: Duration,
    pub public_url: Option<String>,
    pub jit: JitSettings,
    pub storage: Storage,
    pub metrics: MetricsSettings,
    /// Where the audit log is continuously exported.
    pub siem: Vec<crate::siem::SiemSink>,
    pub alerts: crate::alerts::AlertSettings,
    /// OpenID Connect providers people sign in with.
    pub oidc: Vec<crate::oidc_providers::OidcProvider>,
    pub slo: SloSettings,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: path.to_path_buf(), message };
        let raw: RawConfig = toml::from_str(text).map_err(|e| invalid(locate(text, &e)))?;
        let listen: SocketAddr = raw
            .listen
            .parse()
            .map_err(|_| invalid(format!("listen = {:?} is not an address like 127.0.0.1:8200", raw.listen)))?;
        let log_level = match raw.log_level.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => raw.log_level.clone(),
            other => return Err(invalid(format!("log_level = {other:?}: use error, warn, info, debug or trace"))),
        };
        let log_format = match raw.log_format.as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => return Err(invalid(format!("log_format = {other:?}: use json or text"))),
        };
        let (tls, allow_plain_http) = match raw.tls {
            Some(RawTls { cert: Some(cert), key: Some(key), allow_plain_http }) => {
                for (name, p) in [("cert", &cert), ("key", &key)] {
                    if !p.is_file() {
                        return Err(invalid(format!("[tls] {name} = {:?}: no such file", p.display().to_string())));
                    }
                }
                (Some(TlsFiles { cert, key }), allow_plain_http)
            }
            Some(RawTls { cert: None, key: None, allow_plain_http }) => (None, allow_plain_http),
            Some(_) => return Err(invalid("[tls] needs both cert and key".into())),
            None => (None, false),
        };
        if tls.is_none() && !listen.ip().is_loopback() && !allow_plain_http {
            return Err(invalid(format!(
                "listen = {listen} is not a loopback address, and plain HTTP would expose tokens: \
                 configure [tls] cert and key, or set [tls] allow_plain_http = true behind a TLS-terminating proxy"
            )));
        }
        let dur = |key: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
            match v {
                Some(s) => parse_duration(s).map_err(|e| invalid(format!("{key}: {e}"))),
                None => Ok(default),
            }
        };
        let d = AuthSettings::default();
        let auth = AuthSettings {
            session_ttl: dur("[auth] session_ttl", &raw.auth.session_ttl, d.session_ttl)?,
            sp_session_ttl: dur(
                "[auth] service_principal_session_ttl",
                &raw.auth.service_principal_session_ttl,
                d.sp_session_ttl,
            )?,
            per_identity: Limit {
                max_failures: positive(
                    "[auth] max_failures_per_identity",
                    raw.auth.max_failures_per_identity,
                    d.per_identity.max_failures,
                )
                .map_err(invalid)?,
                window: dur("[auth] failure_window", &raw.auth.failure_window, d.per_identity.window)?,
            },
            per_source: Limit {
                max_failures: positive(
                    "[auth] max_failures_per_source",
                    raw.auth.max_failures_per_source,
                    d.per_source.max_failures,
                )
                .map_err(invalid)?,
                window: dur("[auth] failure_window", &raw.auth.failure_window, d.per_source.window)?,
            },
            exchange_refusals_per_source: Limit {
                max_failures: positive(
                    "[auth] max_exchange_refusals_per_source",
                    raw.auth.max_exchange_refusals_per_source,
                    d.exchange_refusals_per_source.max_failures,
                )
                .map_err(invalid)?,
                window: dur("[auth] failure_window", &raw.auth.failure_window, d.exchange_refusals_per_source.window)?,
            },
            oidc_starts_per_source: Limit {
                max_failures: positive(
                    "[auth] max_oidc_starts_per_source",
                    raw.auth.max_oidc_starts_per_source,
                    d.oidc_starts_per_source.max_failures,
                )
                .map_err(invalid)?,
                window: dur("[auth] failure_window", &raw.auth.failure_window, d.oidc_starts_per_source.window)?,
            },
            exchange_session_ttl: dur(
                "[auth] exchange_session_ttl",
                &raw.auth.exchange_session_ttl,
                d.exchange_session_ttl,
            )?,
            sp_secret_lifetime: match raw.auth.sp_secret_lifetime.as_deref() {
                None | Some("never") => None,
                Some(s) => Some(parse_duration(s).ok().filter(|d| *d >= Duration::from_secs(60)).ok_or_else(|| {
                    invalid(format!(
                        "[auth] sp_secret_lifetime: {s:?} is not a duration of at least 1m (e.g. \"90d\") or \"never\""
                    ))
                })?),
            },
        };
        if auth.exchange_session_ttl.is_zero() || auth.exchange_session_ttl > Duration::from_secs(12 * 3600) {
            return Err(invalid(
                "[auth] exchange_session_ttl must be more than 0 and at most 12h: it is meant to be short".into(),
            ));
        }
        let checkpoint_interval =
            dur("[audit] checkpoint_interval", &raw.audit.checkpoint_interval, Duration::from_secs(60))?;
        if let Some(u) = &raw.public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(invalid(format!("public_url = {u:?} must start with https:// or http://")));
        }
        if let Some(u) = &raw.notify.webhook
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(invalid(format!("[notify] webhook = {u:?} must start with https:// or http://")));
        }
        let jit = JitSettings {
            request_timeout: dur("[requests] timeout", &raw.requests.timeout, JitSettings::default().request_timeout)?,
            webhook: raw.notify.webhook.clone(),
        };
        let pg_defaults = PgOptions::default();
        let options = PgOptions {
            max_connections: positive(
                "[postgres] max_connections",
                raw.postgres.max_connections,
                pg_defaults.max_connections,
            )
            .map_err(invalid)?,
            connect_timeout: dur(
                "[postgres] connect_timeout",
                &raw.postgres.connect_timeout,
                pg_defaults.connect_timeout,
            )?,
            ..pg_defaults
        };
        let sd = SloSettings::default();
        let share = |key: &str, v: Option<f64>, default: f64| -> Result<f64, ConfigError> {
            match v {
                Some(t) if t > 0.0 && t < 1.0 => Ok(t),
                Some(t) => Err(invalid(format!(
                    "[slo] {key} = {t}: a share strictly between 0 and 1, e.g. 0.99 for 99% (1 would leave no error budget)"
                ))),
                None => Ok(default),
            }
        };
        let r = &raw.slo;
        let slo = SloSettings {
            recorded_target: share("recorded_target", r.recorded_target, sd.recorded_target)?,
            time_to_grant_auto_p99: dur(
                "[slo] time_to_grant_auto_p99",
                &r.time_to_grant_auto_p99,
                sd.time_to_grant_auto_p99,
            )?,
            time_to_grant_human_p50: dur(
                "[slo] time_to_grant_human_p50",
                &r.time_to_grant_human_p50,
                sd.time_to_grant_human_p50,
            )?,
            jit_target: share("jit_target", r.jit_target, sd.jit_target)?,
            long_lived_max: r.long_lived_max.unwrap_or(sd.long_lived_max),
            sp_secret_max_age: dur("[slo] sp_secret_max_age", &r.sp_secret_max_age, sd.sp_secret_max_age)?,
            signing_key_max_age: dur("[slo] signing_key_max_age", &r.signing_key_max_age, sd.signing_key_max_age)?,
            static_secret_max_age: dur(
                "[slo] static_secret_max_age",
                &r.static_secret_max_age,
                sd.static_secret_max_age,
            )?,
            credential_max_lifetime: dur(
                "[slo] credential_max_lifetime",
                &r.credential_max_lifetime,
                sd.credential_max_lifetime,
            )?,
            breakglass_budget: r.breakglass_budget.unwrap_or(sd.breakglass_budget),
            breakglass_period: dur("[slo] breakglass_period", &r.breakglass_period, sd.breakglass_period)?,
            time_to_revoke_p99: dur("[slo] time_to_revoke_p99", &r.time_to_revoke_p99, sd.time_to_revoke_p99)?,
        };
        let storage = match &raw.storage {
            Some(dsn) => Storage::from_dsn(dsn, options).map_err(|e| invalid(format!("storage: {e}")))?,
            None => Storage::Sqlite,
        };
        let mut siem = Vec::new();
        for raw_sink in &raw.siem {
            let sink = raw_sink.sink().map_err(invalid)?;
            if siem.iter().any(|s: &crate::siem::SiemSink| s.name == sink.name) {
                return Err(invalid(format!("[[siem]] name {:?} is used twice: each sink needs its own", sink.name)));
            }
            siem.push(sink);
        }
        let ad = crate::alerts::AlertSettings::default();
        let alerts = crate::alerts::AlertSettings {
            interval: dur("[alerts] interval", &raw.alerts.interval, ad.interval)?,
            approval_sla: dur("[alerts] approval_sla", &raw.alerts.approval_sla, ad.approval_sla)?,
            user_denies: raw.alerts.user_denies.filter(|n| *n > 0).unwrap_or(ad.user_denies),
            cooldown: dur("[alerts] cooldown", &raw.alerts.cooldown, ad.cooldown)?,
            sp_secret_warning: dur("[alerts] sp_secret_warning", &raw.alerts.sp_secret_warning, ad.sp_secret_warning)?,
        };
        let oidc =
            crate::oidc_providers::validate(raw.oidc, path.parent().unwrap_or(Path::new("."))).map_err(invalid)?;
        Ok(Config {
            oidc,
            storage,
            siem,
            alerts,
            metrics: MetricsSettings { public: raw.metrics.public },
            slo,
            public_url: raw.public_url.map(|u| u.trim_end_matches('/').to_string()),
            jit,
            listen,
            data_dir: raw.data_dir,
            log_level,
            log_format,
            tls,
            allow_plain_http,
            auth,
            checkpoint_interval,
        })
    }
}

fn positive(key: &str, v: Option<usize>, default: usize) -> Result<usize, String> {
    match v {
        Some(0) => Err(format!("{key} must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// toml's message plus "line L, column C".
fn locate(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("latch.toml"), s)
    }

    #[test]
    fn minimal_loopback_config() {
        let c = parse("listen = \"127.0.0.1:8200\"\ndata_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(c.listen.port(), 8200);
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.auth.session_ttl, Duration::from_secs(8 * 3600));
    }

    #[test]
    fn errors_name_key_and_line() {
        let e = parse("listen = \"127.0.0.1:8200\"\ndata_dir = \"/tmp/x\"\nlog_levle = \"info\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("log_levle"), "{e}");
        let e = parse("listen = \"127.0.0.1:8200\"\ndata_dir = \"/x\"\n[auth]\nsession_ttl = \"8x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[auth] session_ttl") && e.contains("unknown unit"), "{e}");
        let e = parse("listen = \"0.0.0.0:8200\"\ndata_dir = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(parse("listen = \"0.0.0.0:8200\"\ndata_dir = \"/x\"\n[tls]\nallow_plain_http = true\n").is_ok());
        let e = parse("listen = \"0.0.0.0:8200\"\ndata_dir = \"/x\"\n[tls]\ncert = \"/nonexistent.crt\"\nkey = \"/nonexistent.key\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such file"), "{e}");
        let e =
            parse("listen = \"127.0.0.1:8200\"\ndata_dir = \"/x\"\nstorage = \"mysql://x\"\n").unwrap_err().to_string();
        assert!(e.contains("storage") && e.contains("postgres://"), "{e}");
        let e = parse("listen = \"127.0.0.1:8200\"\ndata_dir = \"/x\"\n[postgres]\nmax_connections = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("[postgres] max_connections"), "{e}");
    }

    #[test]
    fn metrics_are_private_unless_configured() {
        let base = "listen = \"127.0.0.1:8200\"\ndata_dir = \"/x\"\n";
        assert!(!parse(base).unwrap().metrics.public);
        assert!(parse(&format!("{base}[metrics]\npublic = true\n")).unwrap().metrics.public);
        assert!(!parse(&format!("{base}[metrics]\npublic = false\n")).unwrap().metrics.public);
        let e = parse(&format!("{base}[metrics]\npublik = true\n")).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("publik"), "{e}");
        let e = parse(&format!("{base}[metrics]\npublic = \"yes\"\n")).unwrap_err().to_string();
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn slo_targets_default_and_validate() {
        let base = "listen = \"127.0.0.1:8200\"\ndata_dir = \"/x\"\n";
        assert_eq!(parse(base).unwrap().slo, SloSettings::default());
        let c = parse(&format!(
            "{base}[slo]\nrecorded_target = 0.95\ntime_to_grant_auto_p99 = \"2s\"\nbreakglass_budget = 0\n\
             breakglass_period = \"7d\"\nlong_lived_max = 0\ntime_to_revoke_p99 = \"5s\"\n"
        ))
        .unwrap();
        assert_eq!(c.slo.recorded_target, 0.95);
        assert_eq!(c.slo.time_to_grant_auto_p99, Duration::from_secs(2));
        assert_eq!((c.slo.breakglass_budget, c.slo.long_lived_max), (0, 0));
        assert_eq!(c.slo.breakglass_period, Duration::from_secs(7 * 86_400));
        assert_eq!(c.slo.time_to_revoke_p99, Duration::from_secs(5));
        assert_eq!(c.slo.jit_target, SloSettings::default().jit_target);
        for bad in ["recorded_target = 1.0", "jit_target = 0", "recorded_target = 99"] {
            let e = parse(&format!("{base}[slo]\n{bad}\n")).unwrap_err().to_string();
            assert!(e.contains("[slo]") && e.contains("between 0 and 1"), "{bad}: {e}");
        }
        let e = parse(&format!("{base}[slo]\ntime_to_revoke_p99 = \"1x\"\n")).unwrap_err().to_string();
        assert!(e.contains("[slo] time_to_revoke_p99") && e.contains("unknown unit"), "{e}");
        let e = parse(&format!("{base}[slo]\nbreakglass_budjet = 2\n")).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("breakglass_budjet"), "{e}");
    }

    #[test]
    fn sp_secret_lifetime_and_expiry_warning() {
        let base = "listen = \"127.0.0.1:8200\"\ndata_dir = \"/x\"\n";
        let c = parse(base).unwrap();
        assert_eq!(c.auth.sp_secret_lifetime, None, "secrets never expire unless configured");
        assert_eq!(c.alerts.sp_secret_warning, Duration::from_secs(14 * 86_400));
        let c = parse(&format!("{base}[auth]\nsp_secret_lifetime = \"90d\"\n[alerts]\nsp_secret_warning = \"3d\"\n"))
            .unwrap();
        assert_eq!(c.auth.sp_secret_lifetime, Some(Duration::from_secs(90 * 86_400)));
        assert_eq!(c.alerts.sp_secret_warning, Duration::from_secs(3 * 86_400));
        assert_eq!(
            parse(&format!("{base}[auth]\nsp_secret_lifetime = \"never\"\n")).unwrap().auth.sp_secret_lifetime,
            None
        );
        for bad in ["\"5s\"", "\"soon\""] {
            let e = parse(&format!("{base}[auth]\nsp_secret_lifetime = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("[auth] sp_secret_lifetime") && e.contains("never"), "{bad}: {e}");
        }
    }

    #[test]
    fn postgres_storage() {
        let c = parse(
            "listen = \"127.0.0.1:8200\"\ndata_dir = \"/x\"\nstorage = \"postgres://latch@127.0.0.1/latch\"\n\
             [postgres]\nmax_connections = 4\nconnect_timeout = \"1s\"\n",
        )
        .unwrap();
        let Storage::Postgres { dsn, options } = c.storage else { panic!("not postgres") };
        assert_eq!(dsn, "postgres://latch@127.0.0.1/latch");
        assert_eq!((options.max_connections, options.connect_timeout), (4, Duration::from_secs(1)));
    }
}
