//! Role files: `roles/NAME.toml`, one role per file.
//!
//! A role carries the limits and obligations that hold whatever the Cedar
//! policies say: maximum duration, approvals needed and from whom, MFA,
//! reason and ticket requirements, break-glass, and token audiences.

use std::fmt;
use std::time::Duration;

use latch_core::duration::format_duration;
use latch_core::{parse_duration, validate_name};
use regex::Regex;
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;

use crate::context::DecisionContext;
use crate::error::BundleError;
use crate::pg_template::{DEFAULT_REVOCATION, Placeholder, Template};

/// Most approvals a role may require (a typo guard).
pub const MAX_APPROVALS: u32 = 100;
/// Longest accepted `ticket_pattern`, in bytes.
pub const MAX_PATTERN_LEN: usize = 512;

/// Who may approve requests for a role: a user by name, or any member of a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Approver {
    User(String),
    Group(String),
}

impl Approver {
    /// Parse `user:NAME` or `group:NAME`.
    pub fn parse(s: &str) -> Result<Approver, String> {
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| format!("approver {s:?} must be written \"user:NAME\" or \"group:NAME\""))?;
        match kind {
            "user" => validate_name("user", name).map(|()| Approver::User(name.to_string())),
            "group" => validate_name("group", name).map(|()| Approver::Group(name.to_string())),
            _ => {
                return Err(format!("approver {s:?} has unknown kind {kind:?}: write \"user:NAME\" or \"group:NAME\""));
            }
        }
        .map_err(|e| format!("approver {s:?}: {e}"))
    }
}

impl fmt::Display for Approver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Approver::User(n) => write!(f, "user:{n}"),
            Approver::Group(n) => write!(f, "group:{n}"),
        }
    }
}

impl Serialize for Approver {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Tokens (JWTs) that may be minted under a grant of this role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenSpec {
    /// Allowed `aud` values; never empty.
    pub audiences: Vec<String>,
    /// Cap on a token's lifetime (the grant's remaining time caps it too).
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_ttl: Option<Duration>,
}

/// SSH user certificates that may be signed under a grant of this role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SshSpec {
    /// Login names a certificate may carry; never empty.
    pub principals: Vec<String>,
    /// Target hosts (patterns with `*` and `?`) a grant reaches through the gateway.
    pub hosts: Vec<String>,
    /// Cap on a certificate's validity (the grant's end caps it too).
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_validity: Option<Duration>,
    /// The `force-command` critical option, when set.
    pub force_command: Option<String>,
    /// The `source-address` critical option (comma-separated CIDRs), when set.
    pub source_address: Option<String>,
    /// OpenSSH extensions granted (default: `permit-pty`). The gateway
    /// forwards ports only for roles granted `permit-port-forwarding`.
    pub extensions: Vec<String>,
    /// Whether the gateway records what the user types too (never while a
    /// password prompt is showing); output is always recorded.
    pub record_input: bool,
}

/// Dynamic PostgreSQL roles that may be created under a grant of this role
/// (like Vault's database engine): latch creates a role with a random
/// password on a registered connection, and drops it when the grant ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PostgresSpec {
    /// The registered database connection (`latch db connection add`).
    pub connection: String,
    /// Run in one transaction to create the role; they use `{{name}}` and `{{password}}`.
    pub creation_statements: Vec<Template>,
    /// Run in one transaction to drop it (see [`DEFAULT_REVOCATION`]).
    pub revocation_statements: Vec<Template>,
    /// Cap on a lease (the grant's end caps it too).
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_ttl: Option<Duration>,
}

impl SshSpec {
    pub fn allows_port_forwarding(&self) -> bool {
        self.extensions.iter().any(|e| e == "permit-port-forwarding")
    }
}

/// The extensions OpenSSH knows for user certificates.
pub const SSH_EXTENSIONS: &[&str] = &[
    "no-touch-required",
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// A login name OpenSSH and useradd both accept.
pub fn valid_login(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c))
}

/// A host pattern: letters, digits, `.`, `-`, `*` and `?`.
pub fn valid_host_pattern(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.chars().all(|c| c.is_ascii_alphanumeric() || ".-*?".contains(c))
}

/// `[credentials.secrets]`: KV secrets that belong to the role. Reading them
/// takes an active grant of the role (check-out), for administrators too;
/// when the grant ends, the listed fields get fresh random values (check-in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SecretsSpec {
    /// `MOUNT/PATH` patterns; `*` matches one path segment or part of one.
    pub paths: Vec<String>,
    /// Whether grant holders may also write new versions.
    pub write: bool,
    /// Fields regenerated when a grant of the role ends.
    pub rotate_on_end: Vec<String>,
    /// Those fields are also regenerated when the value is older than this
    /// and no grant of the role is live (a rotation schedule).
    #[serde(serialize_with = "ser_opt_duration")]
    pub rotation_period: Option<Duration>,
}

impl SecretsSpec {
    /// Whether the secret at `mount`/`path` belongs to this role.
    pub fn covers(&self, mount: &str, path: &str) -> bool {
        let full = format!("{mount}/{path}");
        self.paths.iter().any(|p| latch_core::federation::glob_match(p, &full))
    }
}

/// A validated role.
#[derive(Clone, Debug, Serialize)]
pub struct RoleSpec {
    pub name: String,
    pub description: String,
    #[serde(serialize_with = "ser_duration")]
    pub max_duration: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub default_duration: Duration,
    /// Approvals needed before a request becomes active (0 = no approval step).
    pub approvals_required: u32,
    pub approvers: Vec<Approver>,
    pub require_mfa: bool,
    pub require_reason: bool,
    pub require_ticket: bool,
    /// The pattern as written in the file; a ticket must match it as a whole.
    pub ticket_pattern: Option<String>,
    /// Maximum break-glass duration when break-glass is allowed.
    #[serde(serialize_with = "ser_opt_duration")]
    pub breakglass: Option<Duration>,
    pub token: Option<TokenSpec>,
    pub ssh: Option<SshSpec>,
    pub secrets: Option<SecretsSpec>,
    pub postgres: Option<PostgresSpec>,
    /// Bundle path of the file that defines the role.
    pub file: String,
    #[serde(skip)]
    ticket_regex: Option<Regex>,
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

impl PartialEq for RoleSpec {
    fn eq(&self, other: &Self) -> bool {
        self.same_definition(other) && self.file == other.file
    }
}

impl RoleSpec {
    /// Does `ticket` satisfy `ticket_pattern`? True when the role has no pattern.
    /// The pattern must match the whole ticket, not a part of it.
    pub fn ticket_matches(&self, ticket: &str) -> bool {
        self.ticket_regex.as_ref().is_none_or(|re| re.is_match(ticket))
    }

    /// Is this user (with these groups) listed among the role's approvers?
    /// This does not exclude the requester: the caller enforces "no self-approval".
    pub fn is_approver(&self, user_name: &str, groups: &[String]) -> bool {
        self.approvers.iter().any(|a| match a {
            Approver::User(u) => u == user_name,
            Approver::Group(g) => groups.iter().any(|x| x == g),
        })
    }

    /// The role file's own requirements for a request (or a break-glass when
    /// `ctx.breakglass`), independent of Cedar policies. Empty when satisfied;
    /// otherwise one message per unmet requirement, written for the requester.
    ///
    /// * duration: `1..=max_duration` (break-glass: `1..=breakglass max`);
    /// * MFA when `require_mfa`;
    /// * a non-blank reason when `require_reason`, and always for break-glass;
    /// * a ticket when `require_ticket` (not demanded for break-glass), and any
    ///   ticket given must match `ticket_pattern`.
    pub fn check_request(&self, ctx: &DecisionContext) -> Vec<String> {
        self.unmet_requirements(ctx).into_iter().map(|(_, message)| message).collect()
    }

    /// [`RoleSpec::check_request`] with the id of each unmet rule beside its
    /// message: `duration`, `max_duration`, `breakglass_not_allowed`,
    /// `breakglass_max_duration`, `mfa`, `reason`, `ticket` or `ticket_pattern`.
    pub fn unmet_requirements(&self, ctx: &DecisionContext) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let name = &self.name;
        let secs = ctx.duration_secs;
        if secs <= 0 {
            out.push(("duration", "the requested duration must be greater than zero".to_string()));
        }
        if ctx.breakglass {
            match self.breakglass {
                None => out.push(("breakglass_not_allowed", format!("role {name:?} does not allow break-glass"))),
                Some(max) if secs > 0 && secs.unsigned_abs() > max.as_secs() => out.push((
                    "breakglass_max_duration",
                    format!(
                        "break-glass duration {} exceeds the role's break-glass maximum of {}",
                        format_duration(Duration::from_secs(secs.unsigned_abs())),
                        format_duration(max)
                    ),
                )),
                Some(_) => {}
            }
        } else if secs > 0 && secs.unsigned_abs() > self.max_duration.as_secs() {
            out.push((
                "max_duration",
                format!(
                    "requested duration {} exceeds the maximum of {} for role {name:?}",
                    format_duration(Duration::from_secs(secs.unsigned_abs())),
                    format_duration(self.max_duration)
                ),
            ));
        }
        if self.require_mfa && !ctx.mfa {
            out.push(("mfa", format!("role {name:?} requires a session with MFA: log in with a TOTP code")));
        }
        if (self.require_reason || ctx.breakglass) && ctx.reason.trim().is_empty() {
            out.push(("reason", format!("role {name:?} requires a reason: pass --reason TEXT")));
        }
        let ticket = ctx.ticket.trim();
        if self.require_ticket && !ctx.breakglass && ticket.is_empty() {
            out.push(("ticket", format!("role {name:?} requires a ticket: pass --ticket ID")));
        }
        if !ticket.is_empty() && !self.ticket_matches(ticket) {
            let pattern = self.ticket_pattern.as_deref().unwrap_or("");
            out.push((
                "ticket_pattern",
                format!("ticket {ticket:?} does not match the pattern {pattern:?} of role {name:?}"),
            ));
        }
        out
    }

    /// Equal in everything but the file that defines it.
    pub(crate) fn same_definition(&self, o: &Self) -> bool {
        self.name == o.name
            && self.description == o.description
            && self.max_duration == o.max_duration
            && self.default_duration == o.default_duration
            && self.approvals_required == o.approvals_required
            && self.approvers == o.approvers
            && self.require_mfa == o.require_mfa
            && self.require_reason == o.require_reason
            && self.require_ticket == o.require_ticket
            && self.ticket_pattern == o.ticket_pattern
            && self.breakglass == o.breakglass
            && self.token == o.token
            && self.ssh == o.ssh
            && self.secrets == o.secrets
            && self.postgres == o.postgres
    }
}

// ---- the file format -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleToml {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    max_duration: Spanned<String>,
    #[serde(default)]
    default_duration: Option<Spanned<String>>,
    #[serde(default)]
    approval: Option<Spanned<ApprovalToml>>,
    #[serde(default)]
    requirements: Option<RequirementsToml>,
    #[serde(default)]
    breakglass: Option<Spanned<BreakglassToml>>,
    #[serde(default)]
    credentials: Option<CredentialsToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApprovalToml {
    #[serde(default)]
    required: Option<Spanned<i64>>,
    #[serde(default)]
    approvers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequirementsToml {
    #[serde(default)]
    mfa: Option<bool>,
    #[serde(default)]
    reason: Option<bool>,
    #[serde(default)]
    ticket: Option<bool>,
    #[serde(default)]
    ticket_pattern: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BreakglassToml {
    #[serde(default)]
    allowed: bool,
    #[serde(default)]
    max_duration: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsToml {
    #[serde(default)]
    token: Option<Spanned<TokenToml>>,
    #[serde(default)]
    ssh: Option<Spanned<SshToml>>,
    #[serde(default)]
    secrets: Option<Spanned<SecretsToml>>,
    postgres: Option<Spanned<PostgresToml>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsToml {
    #[serde(default)]
    paths: Vec<Spanned<String>>,
    #[serde(default)]
    access: Option<Spanned<String>>,
    #[serde(default)]
    rotate_on_end: Vec<Spanned<String>>,
    #[serde(default)]
    rotation_period: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresToml {
    #[serde(default)]
    connection: Option<Spanned<String>>,
    #[serde(default)]
    creation_statements: Vec<Spanned<String>>,
    #[serde(default)]
    revocation_statements: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    max_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SshToml {
    #[serde(default)]
    principals: Vec<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    max_validity: Option<Spanned<String>>,
    #[serde(default)]
    force_command: Option<Spanned<String>>,
    #[serde(default)]
    source_address: Option<Spanned<String>>,
    #[serde(default)]
    extensions: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    record_input: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenToml {
    #[serde(default)]
    audiences: Vec<Spanned<String>>,
    #[serde(default)]
    max_ttl: Option<Spanned<String>>,
}

type At<'a> = dyn Fn(std::ops::Range<usize>, String) -> BundleError + 'a;
type Dur<'a> = dyn Fn(&Spanned<String>, &str, &mut Vec<BundleError>) -> Option<Duration> + 'a;

/// `[credentials.secrets]`, validated; problems go to `errs`.
fn secrets_spec(section: Spanned<SecretsToml>, at: &At<'_>, dur: &Dur<'_>, errs: &mut Vec<BundleError>) -> SecretsSpec {
    let span = section.span();
    let t = section.into_inner();
    if t.paths.is_empty() {
        errs.push(at(
            span.clone(),
            "credentials.secrets.paths is empty: list the MOUNT/PATH patterns of the role's secrets".into(),
        ));
    }
    let mut paths = Vec::new();
    for p in &t.paths {
        let v = p.get_ref().trim();
        let mount = v.split('/').next().unwrap_or("");
        let ok = v.contains('/')
            && latch_core::validate_name("mount", mount).is_ok()
            && !mount.contains('*')
            && v.len() <= 512
            && !v.chars().any(char::is_control)
            && v.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
        if ok {
            paths.push(v.to_string());
        } else {
            errs.push(at(
                p.span(),
                format!("secret path pattern {v:?} must be MOUNT/PATH (e.g. \"secret/prod/db/*\"), with no empty, `.` or `..` segment"),
            ));
        }
    }
    let write = match t.access.as_ref().map(|a| a.get_ref().as_str()) {
        None | Some("read") => false,
        Some("read-write") => true,
        Some(other) => {
            let span = t.access.as_ref().map(|a| a.span()).unwrap_or(span);
            errs.push(at(span, format!("credentials.secrets.access is \"read\" or \"read-write\", not {other:?}")));
            false
        }
    };
    let mut rotate_on_end = Vec::new();
    for f in &t.rotate_on_end {
        let v = f.get_ref();
        if v.is_empty() || v.len() > 64 || v.chars().any(char::is_control) || rotate_on_end.contains(v) {
            errs.push(at(
                f.span(),
                format!("rotate_on_end field {v:?} must be a distinct, printable name of ≤ 64 bytes"),
            ));
        } else {
            rotate_on_end.push(v.clone());
        }
    }
    let rotation_period = t.rotation_period.as_ref().and_then(|s| dur(s, "credentials.secrets.rotation_period", errs));
    if let (Some(p), true) = (&t.rotation_period, rotate_on_end.is_empty()) {
        errs.push(at(
            p.span(),
            "credentials.secrets.rotation_period needs rotate_on_end: list the fields latch regenerates".into(),
        ));
    }
    SecretsSpec { paths, write, rotate_on_end, rotation_period }
}

/// `[credentials.ssh]`, validated; problems go to `errs`.
fn ssh_spec(section: Spanned<SshToml>, at: &At<'_>, dur: &Dur<'_>, errs: &mut Vec<BundleError>) -> SshSpec {
    let span = section.span();
    let t = section.into_inner();
    if t.principals.is_empty() {
        errs.push(at(
            span.clone(),
            "credentials.ssh.principals is empty: list the login names certificates may carry".to_string(),
        ));
    }
    let mut principals: Vec<String> = Vec::new();
    for p in &t.principals {
        let v = p.get_ref().trim();
        if !valid_login(v) {
            errs.push(at(
                p.span(),
                format!("principal {v:?} is not a login name (lowercase letters, digits, _ . -; at most 32)"),
            ));
        } else if !principals.iter().any(|x| x == v) {
            principals.push(v.to_string());
        }
    }
    let mut hosts: Vec<String> = Vec::new();
    for h in &t.hosts {
        let v = h.get_ref().trim();
        if valid_host_pattern(v) {
            hosts.push(v.to_ascii_lowercase());
        } else {
            errs.push(at(h.span(), format!("host pattern {v:?} may hold only letters, digits, '.', '-', '*' and '?'")));
        }
    }
    let max_validity = t.max_validity.as_ref().and_then(|s| dur(s, "credentials.ssh.max_validity", errs));
    let printable = |o: &Option<Spanned<String>>, what: &str, errs: &mut Vec<BundleError>| -> Option<String> {
        let o = o.as_ref()?;
        let v = o.get_ref().trim();
        if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
            errs.push(at(o.span(), format!("{what} must be printable text of at most 1024 bytes")));
            return None;
        }
        Some(v.to_string())
    };
    let force_command = printable(&t.force_command, "credentials.ssh.force_command", errs);
    let source_address = printable(&t.source_address, "credentials.ssh.source_address", errs);
    if let (Some(s), Some(v)) = (&t.source_address, &source_address)
        && !v.split(',').all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_hexdigit() || ".:/".contains(ch)))
    {
        errs.push(at(s.span(), format!("source_address {v:?} must be comma-separated addresses or CIDRs")));
    }
    let extensions = match &t.extensions {
        None => vec!["permit-pty".to_string()],
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for e in list {
                let v = e.get_ref().trim();
                if !SSH_EXTENSIONS.contains(&v) {
                    errs.push(at(e.span(), format!("unknown extension {v:?}: use {}", SSH_EXTENSIONS.join(", "))));
                } else if !out.iter().any(|x| x == v) {
                    out.push(v.to_string());
                }
            }
            out
        }
    };
    SshSpec { principals, hosts, max_validity, force_command, source_address, extensions, record_input: t.record_input }
}

/// `[credentials.postgres]`, validated; problems go to `errs`.
fn postgres_spec(raw: Spanned<PostgresToml>, at: &At<'_>, dur: &Dur<'_>, errs: &mut Vec<BundleError>) -> PostgresSpec {
    let span = raw.span();
    let t = raw.into_inner();
    let connection = match &t.connection {
        None => {
            errs.push(at(
                span.clone(),
                "credentials.postgres.connection is missing: name a connection registered with `latch db connection add`"
                    .to_string(),
            ));
            String::new()
        }
        Some(c) => {
            let v = c.get_ref().trim();
            if let Err(e) = validate_name("connection", v) {
                errs.push(at(c.span(), format!("credentials.postgres.connection: {e}")));
            }
            v.to_string()
        }
    };
    let templates = |list: &[Spanned<String>], what: &str, errs: &mut Vec<BundleError>| -> Vec<Template> {
        let mut out = Vec::new();
        for s in list {
            match Template::parse(s.get_ref()) {
                Ok(t) => out.push(t),
                Err(e) => errs.push(at(s.span(), format!("credentials.postgres.{what}: {e}"))),
            }
        }
        out
    };
    if t.creation_statements.is_empty() {
        errs.push(at(
            span.clone(),
            "credentials.postgres.creation_statements is empty: give at least \"CREATE ROLE {{name}} WITH LOGIN \
             PASSWORD {{password}} VALID UNTIL {{expiration}}\""
                .to_string(),
        ));
    }
    let creation_statements = templates(&t.creation_statements, "creation_statements", errs);
    let all_parsed = creation_statements.len() == t.creation_statements.len() && !creation_statements.is_empty();
    for (p, hint) in [(Placeholder::Name, "{{name}}"), (Placeholder::Password, "{{password}}")] {
        if all_parsed && !creation_statements.iter().any(|s| s.uses(p)) {
            errs.push(at(
                t.creation_statements[0].span(),
                format!("credentials.postgres.creation_statements never use {hint}: the role latch creates needs it"),
            ));
        }
    }
    let revocation_statements = match &t.revocation_statements {
        None => DEFAULT_REVOCATION.iter().filter_map(|s| Template::parse(s).ok()).collect(),
        Some(list) => {
            if list.is_empty() {
                errs.push(at(
                    span.clone(),
                    "credentials.postgres.revocation_statements is empty: leave it out for the default \
                     (terminate sessions, reassign and drop owned objects, drop the role)"
                        .to_string(),
                ));
            }
            let parsed = templates(list, "revocation_statements", errs);
            if parsed.len() == list.len() && !parsed.is_empty() && !parsed.iter().any(|s| s.uses(Placeholder::Name)) {
                errs.push(at(
                    list[0].span(),
                    "credentials.postgres.revocation_statements never use {{name}}: they must drop the role"
                        .to_string(),
                ));
            }
            parsed
        }
    };
    let max_ttl = t.max_ttl.as_ref().and_then(|s| dur(s, "credentials.postgres.max_ttl", errs));
    PostgresSpec { connection, creation_statements, revocation_statements, max_ttl }
}

/// Parse and validate one role file. Every problem found is returned, each with its line.
pub(crate) fn parse_role(file: &str, src: &str) -> Result<RoleSpec, Vec<BundleError>> {
    let raw: RoleToml = match toml::from_str(src) {
        Ok(r) => r,
        Err(e) => {
            let message = e.message().trim().to_string();
            let err = match e.span() {
                Some(span) => BundleError::at(file, src, span.start, message),
                None => BundleError::new(file, None, None, message),
            };
            return Err(vec![err]);
        }
    };
    let mut errs = Vec::new();
    let at = |span: std::ops::Range<usize>, msg: String| BundleError::at(file, src, span.start, msg);

    let name = raw.name.get_ref().trim().to_string();
    if let Err(e) = validate_name("role", &name) {
        errs.push(at(raw.name.span(), e.to_string()));
    }

    let dur = |s: &Spanned<String>, what: &str, errs: &mut Vec<BundleError>| -> Option<Duration> {
        match parse_duration(s.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(at(s.span(), format!("{what}: {e}")));
                None
            }
        }
    };

    let max_duration = dur(&raw.max_duration, "max_duration", &mut errs);
    let default_duration = match (&raw.default_duration, max_duration) {
        (Some(s), max) => match (dur(s, "default_duration", &mut errs), max) {
            (Some(d), Some(max)) if d > max => {
                errs.push(at(
                    s.span(),
                    format!(
                        "default_duration {} is longer than max_duration {}",
                        format_duration(d),
                        format_duration(max)
                    ),
                ));
                None
            }
            (d, _) => d,
        },
        (None, Some(max)) => Some(max.min(Duration::from_secs(3600))),
        (None, None) => None,
    };

    // [approval]
    let (approvals_required, approvers) = match &raw.approval {
        None => {
            errs.push(BundleError::new(
                file,
                None,
                None,
                "missing [approval] section: give `approvers = [\"group:NAME\", …]`, or `required = 0` for a role without an approval step",
            ));
            (0, Vec::new())
        }
        Some(section) => {
            let a = section.get_ref();
            let required = match &a.required {
                None => 1,
                Some(r) => match u32::try_from(*r.get_ref()) {
                    Ok(n) if n <= MAX_APPROVALS => n,
                    _ => {
                        errs.push(at(
                            r.span(),
                            format!("approval.required must be between 0 and {MAX_APPROVALS}, not {}", r.get_ref()),
                        ));
                        0
                    }
                },
            };
            let mut approvers: Vec<Approver> = Vec::new();
            for s in &a.approvers {
                match Approver::parse(s.get_ref()) {
                    Ok(ap) if approvers.contains(&ap) => {
                        errs.push(at(s.span(), format!("approver {ap} is listed twice")));
                    }
                    Ok(ap) => approvers.push(ap),
                    Err(e) => errs.push(at(s.span(), e)),
                }
            }
            if required > 0 && a.approvers.is_empty() {
                let span = a.required.as_ref().map_or_else(|| section.span(), Spanned::span);
                errs.push(at(
                    span,
                    format!(
                        "approval.required is {required} but approval.approvers is empty: list who may approve (\"group:NAME\" or \"user:NAME\"), or set required = 0"
                    ),
                ));
            }
            (required, approvers)
        }
    };

    // [requirements]
    let req =
        raw.requirements.unwrap_or(RequirementsToml { mfa: None, reason: None, ticket: None, ticket_pattern: None });
    let mut ticket_regex = None;
    let ticket_pattern = req.ticket_pattern.as_ref().map(|p| p.get_ref().clone());
    if let Some(p) = &req.ticket_pattern {
        let pat = p.get_ref();
        if pat.is_empty() {
            errs.push(at(p.span(), "ticket_pattern is empty: remove it or give a regular expression".to_string()));
        } else if pat.len() > MAX_PATTERN_LEN {
            errs.push(at(p.span(), format!("ticket_pattern is longer than {MAX_PATTERN_LEN} bytes")));
        } else {
            // Compile the pattern alone first: that rejects unbalanced groups (so the
            // anchoring wrapper cannot be escaped) and reports errors as written.
            let anchored = Regex::new(pat)
                .and_then(|_| regex::RegexBuilder::new(&format!("^(?:{pat})$")).size_limit(1 << 20).build());
            match anchored {
                Ok(re) => ticket_regex = Some(re),
                Err(e) => {
                    // regex's syntax errors span several lines (pattern, caret, error): keep the error
                    let text = e.to_string();
                    let why = text.lines().last().unwrap_or("").trim().trim_start_matches("error: ").to_string();
                    errs.push(at(p.span(), format!("ticket_pattern is not a valid regular expression: {why}")));
                }
            }
        }
    }

    // [breakglass]
    let breakglass = match &raw.breakglass {
        None => None,
        Some(section) => {
            let b = section.get_ref();
            match (&b.max_duration, b.allowed) {
                (Some(s), true) => dur(s, "breakglass.max_duration", &mut errs),
                (None, true) => {
                    errs.push(at(
                        section.span(),
                        "breakglass.allowed is true but breakglass.max_duration is missing: add e.g. max_duration = \"1h\""
                            .to_string(),
                    ));
                    None
                }
                (Some(s), false) => {
                    // still check it, so a typo does not wait until someone flips `allowed`
                    let _ = dur(s, "breakglass.max_duration", &mut errs);
                    None
                }
                (None, false) => None,
            }
        }
    };

    let (token_raw, ssh_raw, secrets_raw, pg_raw) =
        raw.credentials.map(|c| (c.token, c.ssh, c.secrets, c.postgres)).unwrap_or((None, None, None, None));
    let ssh = ssh_raw.map(|s| ssh_spec(s, &at, &dur, &mut errs));
    let secrets = secrets_raw.map(|s| secrets_spec(s, &at, &dur, &mut errs));
    let postgres = pg_raw.map(|s| postgres_spec(s, &at, &dur, &mut errs));
    // [credentials.token]
    let token = match token_raw {
        None => None,
        Some(t) => {
            let span = t.span();
            let t = t.into_inner();
            if t.audiences.is_empty() {
                errs.push(at(
                    span,
                    "credentials.token.audiences is empty: list the audiences tokens may be minted for".to_string(),
                ));
            }
            let mut audiences: Vec<String> = Vec::new();
            for a in &t.audiences {
                let v = a.get_ref().trim();
                if v.is_empty() || v.chars().any(char::is_control) {
                    errs.push(at(a.span(), format!("audience {:?} must be non-empty printable text", a.get_ref())));
                } else if audiences.iter().any(|x| x == v) {
                    errs.push(at(a.span(), format!("audience {v:?} is listed twice")));
                } else {
                    audiences.push(v.to_string());
                }
            }
            let max_ttl = t.max_ttl.as_ref().and_then(|s| dur(s, "credentials.token.max_ttl", &mut errs));
            Some(TokenSpec { audiences, max_ttl })
        }
    };

    match (errs.is_empty(), max_duration, default_duration) {
        (true, Some(max_duration), Some(default_duration)) => Ok(RoleSpec {
            name,
            description: raw.description.unwrap_or_default().trim().to_string(),
            max_duration,
            default_duration,
            approvals_required,
            approvers,
            require_mfa: req.mfa.unwrap_or(false),
            require_reason: req.reason.unwrap_or(true),
            require_ticket: req.ticket.unwrap_or(false),
            ticket_pattern,
            breakglass,
            token,
            ssh,
            secrets,
            postgres,
            file: file.to_string(),
            ticket_regex,
        }),
        _ => Err(errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"name = "prod-db-admin"
description = "Administer the production database"
max_duration = "4h"
default_duration = "1h"
[approval]
required = 2
approvers = ["group:dba-leads", "user:carol"]
[requirements]
mfa = true
reason = true
ticket = true
ticket_pattern = "(INC|CHG)-[0-9]+"
[breakglass]
allowed = true
max_duration = "1h"
[credentials.token]
audiences = ["https://db.internal"]
max_ttl = "15m"
"#;

    fn one_err(src: &str) -> BundleError {
        let errs = parse_role("roles/x.toml", src).err().unwrap_or_default();
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap_or_else(|| BundleError::new("", None, None, ""))
    }

    #[test]
    fn parses_a_full_role() {
        let r = parse_role("roles/prod-db.toml", FULL).unwrap();
        assert_eq!(r.name, "prod-db-admin");
        assert_eq!(r.description, "Administer the production database");
        assert_eq!(r.max_duration, Duration::from_secs(4 * 3600));
        assert_eq!(r.default_duration, Duration::from_secs(3600));
        assert_eq!(r.approvals_required, 2);
        assert_eq!(r.approvers, vec![Approver::Group("dba-leads".into()), Approver::User("carol".into())]);
        assert!(r.require_mfa && r.require_reason && r.require_ticket);
        assert_eq!(r.breakglass, Some(Duration::from_secs(3600)));
        let t = r.token.clone().unwrap();
        assert_eq!(t.audiences, vec!["https://db.internal".to_string()]);
        assert_eq!(t.max_ttl, Some(Duration::from_secs(900)));
        assert_eq!(r.file, "roles/prod-db.toml");
        assert!(r.ticket_matches("INC-42"));
        assert!(r.ticket_matches("CHG-7"));
        assert!(!r.ticket_matches("xINC-42"), "the whole ticket must match");
        assert!(!r.ticket_matches("INC-"));
        assert!(r.is_approver("carol", &[]));
        assert!(r.is_approver("dave", &["dba-leads".to_string()]));
        assert!(!r.is_approver("dave", &["ops".to_string()]));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["max_duration"], "4h");
        assert_eq!(json["approvers"][0], "group:dba-leads");
        assert_eq!(json["token"]["max_ttl"], "15m");
    }

    #[test]
    fn defaults() {
        let r = parse_role("roles/a.toml", "name = \"a\"\nmax_duration = \"30m\"\n[approval]\nrequired = 0\n").unwrap();
        assert_eq!(r.default_duration, Duration::from_secs(1800), "min(1h, max)");
        assert_eq!(r.approvals_required, 0);
        assert!(!r.require_mfa && r.require_reason && !r.require_ticket);
        assert_eq!(r.breakglass, None);
        assert_eq!(r.token, None);
        assert!(r.ticket_matches("anything"));
        let r =
            parse_role("roles/a.toml", "name = \"a\"\nmax_duration = \"8h\"\n[approval]\napprovers = [\"user:x\"]\n")
                .unwrap();
        assert_eq!(r.default_duration, Duration::from_secs(3600));
        assert_eq!(r.approvals_required, 1, "one approval by default");
    }

    #[test]
    fn unknown_key_reports_its_line() {
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\nrequird = 1\n");
        assert_eq!((e.file.as_str(), e.line), ("roles/x.toml", Some(5)), "{e}");
        assert!(e.message.contains("requird"), "{e}");
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\nmax_durration = \"2h\"\n[approval]\nrequired = 0\n");
        assert_eq!(e.line, Some(3), "{e}");
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[credentials.ssh]\nx = 1\n");
        assert!(e.line.is_some_and(|l| l >= 5), "{e}");
    }

    #[test]
    fn secrets_credentials_are_validated() {
        let head = "name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[credentials.secrets]\n";
        let ok =
            format!("{head}paths = [\"secret/prod/db/*\"]\naccess = \"read-write\"\nrotate_on_end = [\"password\"]\n");
        let r = parse_role("roles/a.toml", &ok).unwrap();
        let s = r.secrets.unwrap();
        assert!(s.write);
        assert!(s.covers("secret", "prod/db/main"));
        assert!(!s.covers("secret", "prod/db/main/deeper"), "`*` stays within one segment");
        assert!(!s.covers("other", "prod/db/main"));
        for (bad, says) in [
            ("paths = []\n", "paths is empty"),
            ("paths = [\"nomount\"]\n", "MOUNT/PATH"),
            ("paths = [\"secret/../x\"]\n", "MOUNT/PATH"),
            ("paths = [\"s*/x\"]\n", "MOUNT/PATH"),
            ("paths = [\"secret/x\"]\naccess = \"all\"\n", "read-write"),
            ("paths = [\"secret/x\"]\nrotate_on_end = [\"a\", \"a\"]\n", "distinct"),
            ("paths = [\"secret/x\"]\nttl = \"1h\"\n", "unknown field"),
            ("paths = [\"secret/x\"]\nrotation_period = \"30d\"\n", "needs rotate_on_end"),
            ("paths = [\"secret/x\"]\nrotate_on_end = [\"p\"]\nrotation_period = \"soon\"\n", "rotation_period"),
        ] {
            let e = parse_role("roles/a.toml", &format!("{head}{bad}")).unwrap_err();
            assert!(e.iter().any(|e| e.to_string().contains(says)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn ssh_credentials_are_validated() {
        let ok = "name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[credentials.ssh]\n\
                  principals = [\"root\", \"deploy\"]\nhosts = [\"db-*.prod.internal\"]\nmax_validity = \"30m\"\n\
                  source_address = \"10.0.0.0/8,127.0.0.1\"\nextensions = [\"permit-pty\", \"permit-port-forwarding\"]\n";
        let r = parse_role("roles/a.toml", ok).unwrap();
        let s = r.ssh.unwrap();
        assert_eq!(s.principals, ["root", "deploy"]);
        assert_eq!(s.max_validity, Some(Duration::from_secs(1800)));
        assert_eq!(s.extensions, ["permit-pty", "permit-port-forwarding"]);
        assert!(s.allows_port_forwarding() && !s.record_input);
        let defaults = parse_role(
            "roles/a.toml",
            "name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[credentials.ssh]\nprincipals = [\"root\"]\n",
        )
        .unwrap();
        assert_eq!(defaults.ssh.unwrap().extensions, ["permit-pty"]);
        for (bad, needle) in [
            ("principals = []", "principals is empty"),
            ("principals = [\"Root;rm\"]", "not a login name"),
            ("principals = [\"root\"]\nhosts = [\"a b\"]", "host pattern"),
            ("principals = [\"root\"]\nextensions = [\"permit-everything\"]", "unknown extension"),
            ("principals = [\"root\"]\nsource_address = \"anywhere\"", "source_address"),
            ("principals = [\"root\"]\nmax_validity = \"forever\"", "max_validity"),
        ] {
            let src =
                format!("name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[credentials.ssh]\n{bad}\n");
            let e = one_err(&src);
            assert!(e.message.contains(needle) && e.line.is_some_and(|l| l >= 5), "{bad}: {e}");
        }
    }

    #[test]
    fn postgres_credentials_are_validated() {
        const HEAD: &str = "name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[credentials.postgres]\n";
        let ok = format!(
            "{HEAD}connection = \"app-db\"\nmax_ttl = \"30m\"\ncreation_statements = [\n  \
             \"CREATE ROLE \\\"{{{{name}}}}\\\" WITH LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}'\",\n  \
             \"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {{{{name}}}}\",\n]\n"
        );
        let r = parse_role("roles/a.toml", &ok).unwrap();
        let p = r.postgres.clone().unwrap();
        assert_eq!(p.connection, "app-db");
        assert_eq!(p.max_ttl, Some(Duration::from_secs(1800)));
        assert_eq!(p.creation_statements.len(), 2);
        let defaults: Vec<&str> = p.revocation_statements.iter().map(Template::source).collect();
        assert_eq!(defaults, DEFAULT_REVOCATION, "default revocation");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["postgres"]["revocation_statements"][4], "DROP ROLE IF EXISTS {{name}}");
        let create = "creation_statements = [\"CREATE ROLE {{name}} LOGIN PASSWORD {{password}}\"]";
        for (bad, line, needle) in [
            (format!("{create}\n"), 5, "connection is missing"),
            (format!("connection = \"bad name\"\n{create}\n"), 6, "connection"),
            ("connection = \"db\"\n".to_string(), 5, "creation_statements is empty"),
            (
                "connection = \"db\"\ncreation_statements = [\"CREATE ROLE {{nam}}\"]\n".to_string(),
                7,
                "unknown placeholder",
            ),
            (
                "connection = \"db\"\ncreation_statements = [\"CREATE ROLE {{name}} LOGIN\"]\n".to_string(),
                7,
                "never use {{password}}",
            ),
            (
                format!("connection = \"db\"\n{create}\nrevocation_statements = []\n"),
                5,
                "revocation_statements is empty",
            ),
            (
                format!("connection = \"db\"\n{create}\nrevocation_statements = [\"DROP ROLE x\"]\n"),
                8,
                "never use {{name}}",
            ),
            (
                format!(
                    "connection = \"db\"\n{create}\nrevocation_statements = [\"COMMENT ON ROLE x IS 'a {{{{name}}}}'\"]\n"
                ),
                8,
                "inside a longer quoted",
            ),
            (format!("connection = \"db\"\n{create}\nmax_ttl = \"soon\"\n"), 8, "max_ttl"),
            (format!("connection = \"db\"\n{create}\nusername_template = \"x\"\n"), 8, "username_template"),
        ] {
            let e = one_err(&format!("{HEAD}{bad}"));
            assert!(e.message.contains(needle), "{bad}: {e}");
            assert!(e.line.is_some_and(|l| l >= line.min(5)), "{bad}: {e}");
            if line > 5 {
                assert_eq!(e.line, Some(line), "{bad}: {e}");
            }
        }
    }

    #[test]
    fn bad_duration_reports_its_line() {
        let e = one_err("name = \"a\"\n\nmax_duration = \"4 hours\"\n[approval]\nrequired = 0\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.column, Some(16), "{e}");
        assert!(e.message.starts_with("max_duration:"), "{e}");
    }

    #[test]
    fn default_longer_than_max() {
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\ndefault_duration = \"2h\"\n[approval]\nrequired = 0\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("longer than max_duration 1h"), "{e}");
    }

    #[test]
    fn approvals_without_approvers() {
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 2\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("approvers is empty"), "{e}");
        // default required = 1 with no approvers points at the section
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n\n[approval]\n");
        assert_eq!(e.line, Some(4), "{e}");
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n");
        assert!(e.message.contains("missing [approval]"), "{e}");
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = -1\napprovers=[\"user:a\"]\n");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn bad_approvers_and_names() {
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n[approval]\napprovers = [\"user:a\",\n  \"team:x\"]\n");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("unknown kind"), "{e}");
        let e = one_err("name = \"a\"\nmax_duration = \"1h\"\n[approval]\napprovers = [\"group:bad name\"]\n");
        assert_eq!(e.line, Some(4), "{e}");
        let e = one_err("name = \"-bad\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("role name"), "{e}");
    }

    #[test]
    fn bad_regex_reports_its_line() {
        let e = one_err(
            "name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[requirements]\nticket_pattern = \"(INC\"\n",
        );
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.message.contains("not a valid regular expression: unclosed group"), "{e}");
        assert!(!e.message.contains('\n'), "{e}");
    }

    #[test]
    fn breakglass_needs_a_max() {
        let e =
            one_err("name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[breakglass]\nallowed = true\n");
        assert_eq!(e.line, Some(5), "{e}");
        let e = one_err(
            "name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[breakglass]\nallowed = false\nmax_duration = \"x\"\n",
        );
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn collects_several_errors() {
        let errs = parse_role(
            "roles/x.toml",
            "name = \"a b\"\nmax_duration = \"0s\"\n[approval]\nrequired = 1\n[credentials.token]\naudiences = []\nmax_ttl = \"5\"\n",
        )
        .err()
        .unwrap_or_default();
        let lines: Vec<_> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![Some(1), Some(2), Some(4), Some(5), Some(7)], "{errs:?}");
    }

    #[test]
    fn bad_toml_syntax() {
        let e = one_err("name = \"a\"\nmax_duration = \n");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn check_request_lists_unmet_requirements() {
        let r = parse_role("roles/prod-db.toml", FULL).unwrap();
        let mut ctx = DecisionContext::at(0);
        ctx.duration_secs = 3600;
        ctx.mfa = true;
        ctx.reason = "fix".into();
        ctx.ticket = "INC-1".into();
        assert!(r.check_request(&ctx).is_empty(), "{:?}", r.check_request(&ctx));
        ctx.duration_secs = 5 * 3600;
        ctx.mfa = false;
        ctx.reason = " ".into();
        ctx.ticket = "JIRA-1".into();
        let v = r.check_request(&ctx);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[0].contains("exceeds the maximum of 4h"), "{v:?}");
        ctx.ticket.clear();
        assert!(r.check_request(&ctx).iter().any(|m| m.contains("requires a ticket")));
        // break-glass: own maximum, no ticket needed, reason needed
        let mut bg = DecisionContext::at(0);
        bg.breakglass = true;
        bg.mfa = true;
        bg.duration_secs = 7200;
        bg.reason = "outage".into();
        let v = r.check_request(&bg);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("break-glass maximum of 1h"), "{v:?}");
        bg.duration_secs = 1800;
        assert!(r.check_request(&bg).is_empty());
        let plain =
            parse_role("roles/a.toml", "name = \"a\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n").unwrap();
        assert!(plain.check_request(&bg)[0].contains("does not allow break-glass"));
        let rules = |ctx: &DecisionContext, r: &RoleSpec| -> Vec<&str> {
            r.unmet_requirements(ctx).into_iter().map(|(rule, _)| rule).collect()
        };
        assert_eq!(rules(&bg, &plain), ["breakglass_not_allowed"]);
        bg.duration_secs = 7200;
        assert_eq!(rules(&bg, &r), ["breakglass_max_duration"]);
        assert_eq!(rules(&ctx, &r), ["max_duration", "mfa", "reason", "ticket"]);
        ctx.ticket = "JIRA-1".into();
        assert_eq!(rules(&ctx, &r), ["max_duration", "mfa", "reason", "ticket_pattern"]);
    }
}
