//! A validated policy bundle: roles and Cedar policies, with decisions and plans.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Effect, Entities, Entity, EntityId, EntityUid, Policy, PolicyId, PolicySet,
    Request, ResourceConstraint, RestrictedExpression, ValidationMode,
};
use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::context::{Action, Decision, DecisionContext, PrincipalInfo};
use crate::error::{BundleError, BundleErrors, line_col};
use crate::role::{RoleSpec, parse_role};
use crate::schema::{ROLE_TYPE, names, validator};

/// Directory of role files inside a bundle.
pub const ROLES_DIR: &str = "roles";
/// Directory of Cedar policy files inside a bundle.
pub const POLICIES_DIR: &str = "policies";
/// Most files a bundle may hold.
pub const MAX_FILES: usize = 10_000;

/// Where a policy came from, and a canonical form to compare versions.
#[derive(Clone, Debug)]
struct PolicyMeta {
    file: String,
    line: usize,
    /// Cedar's JSON form of the policy (insensitive to layout and comments).
    canonical: String,
}

/// A validated set of roles and Cedar policies. Cheap to share (`Arc<Bundle>`);
/// [`Bundle::decide`] takes `&self`.
#[derive(Clone)]
pub struct Bundle {
    files: BTreeMap<String, String>,
    hash: String,
    roles: BTreeMap<String, RoleSpec>,
    /// Per role: its uid, its entity, and for each action (in `Action::ALL`
    /// order) the policies whose scope can match that role and action.
    role_entities: HashMap<String, RoleEntry>,
    policies: PolicySet,
    policy_meta: BTreeMap<String, PolicyMeta>,
    warnings: Vec<String>,
    authorizer: std::sync::Arc<Authorizer>,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("hash", &self.hash)
            .field("roles", &self.roles.keys().collect::<Vec<_>>())
            .field("policies", &self.policy_meta.keys().collect::<Vec<_>>())
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// What applying one bundle over another changes (names and policy ids, sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub roles_added: Vec<String>,
    pub roles_removed: Vec<String>,
    pub roles_changed: Vec<String>,
    pub policies_added: Vec<String>,
    pub policies_removed: Vec<String>,
    pub policies_changed: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.roles_added.is_empty()
            && self.roles_removed.is_empty()
            && self.roles_changed.is_empty()
            && self.policies_added.is_empty()
            && self.policies_removed.is_empty()
            && self.policies_changed.is_empty()
    }
}

/// What should happen to a new request (see [`Bundle::evaluate_request`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RequestOutcome {
    /// Refused: `reasons` are written for the requester; `decision` is the
    /// policy decision that refused it (`None` when the role file's own
    /// requirements, or an unknown role, refused it before any policy ran).
    Denied { reasons: Vec<String>, decision: Option<Decision> },
    /// Grant now: `activate` (or `breakglass`) was permitted.
    Active { decision: Decision },
    /// Wait for `approvals` distinct approvals (never the requester's own).
    Pending { approvals: u32, decision: Decision },
}

impl RequestOutcome {
    pub fn is_denied(&self) -> bool {
        matches!(self, RequestOutcome::Denied { .. })
    }
}

fn denial_reason(action: Action, role: &str, d: &Decision) -> String {
    if d.policies.is_empty() {
        format!("no policy permits {} on role {role:?}", action.as_str())
    } else {
        format!("{} on role {role:?} is forbidden by policy {}", action.as_str(), d.policies.join(", "))
    }
}

/// Hex SHA-256 over the (path, content) pairs in path order, each part
/// prefixed by its length in bytes as a big-endian u64.
pub fn bundle_hash(files: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (path, content) in files {
        for part in [path.as_bytes(), content.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    data_encoding::HEXLOWER.encode(&h.finalize())
}

enum FileKind {
    Role,
    Policy,
}

/// `roles/NAME.toml` or `policies/NAME.cedar`, nothing else.
fn classify(path: &str) -> Result<FileKind, String> {
    let expected = "a bundle holds only roles/*.toml and policies/*.cedar files";
    let Some((dir, name)) = path.split_once('/') else {
        return Err(format!("unexpected file {path:?}: {expected}"));
    };
    let bad_name =
        name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') || name.chars().any(char::is_control);
    match dir {
        ROLES_DIR if !bad_name && name.len() > 5 && name.ends_with(".toml") => Ok(FileKind::Role),
        POLICIES_DIR if !bad_name && name.len() > 6 && name.ends_with(".cedar") => Ok(FileKind::Policy),
        _ => Err(format!("unexpected file {path:?}: {expected}")),
    }
}

/// What a decision about one role needs, prepared once per bundle.
#[derive(Clone)]
struct RoleEntry {
    uid: EntityUid,
    entity: Entity,
    by_action: [PolicySet; 4],
}

/// Can this policy's scope match `role` and `action`? Roles have no parents and
/// actions no groups, so `in` is `==` here. Leaving out policies whose scope
/// cannot match changes no decision and no diagnostic (a policy whose scope does
/// not match is never satisfied and never errors), and keeps decisions fast with
/// many roles: Cedar evaluates every policy of the set it is given.
fn scope_may_match(policy: &Policy, role: &EntityUid, action: &EntityUid) -> bool {
    let action_ok = match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => &a == action,
        ActionConstraint::In(list) => list.contains(action),
    };
    let resource_ok = match policy.resource_constraint() {
        ResourceConstraint::Any => true,
        ResourceConstraint::Is(t) => &t == role.type_name(),
        ResourceConstraint::Eq(r) | ResourceConstraint::In(r) => &r == role,
        ResourceConstraint::IsIn(t, r) => &t == role.type_name() && &r == role,
    };
    action_ok && resource_ok
}

/// A policy parsed from one file, before it joins the set.
struct ParsedPolicy {
    id: String,
    file: String,
    line: usize,
    policy: Policy,
}

/// `message (label) (help: …)` for a Cedar diagnostic.
fn diagnostic_message(d: &dyn Diagnostic) -> String {
    let mut msg = d.to_string();
    if let Some(label) = d.labels().and_then(|mut l| l.next()).and_then(|l| l.label().map(str::to_string))
        && !label.is_empty()
        && !msg.contains(&label)
    {
        msg.push_str(": ");
        msg.push_str(&label);
    }
    if let Some(help) = d.help() {
        msg.push_str(&format!(" (help: {help})"));
    }
    msg
}

/// Drop ` for Action::"name"` from a validator message (see its use).
fn without_action(msg: &str) -> String {
    let mut out = msg.to_string();
    for a in Action::ALL {
        out = out.replace(&format!(" for Action::\"{}\"", a.as_str()), "");
    }
    out
}

/// Byte offset of a diagnostic's first label, if it has one.
fn diagnostic_offset(d: &dyn Diagnostic) -> Option<usize> {
    d.labels().and_then(|mut l| l.next()).map(|l| l.offset())
}

fn policy_index(id: &PolicyId) -> usize {
    id.to_string().strip_prefix("policy").and_then(|n| n.parse().ok()).unwrap_or(usize::MAX)
}

/// Parse one `.cedar` file into policies with ids and start lines.
fn parse_policy_file(
    file: &str,
    src: &str,
    errs: &mut Vec<BundleError>,
    warnings: &mut Vec<String>,
) -> Vec<ParsedPolicy> {
    let pset = match PolicySet::from_str(src) {
        Ok(p) => p,
        Err(parse_errs) => {
            for e in parse_errs.iter() {
                let msg = diagnostic_message(e);
                errs.push(match diagnostic_offset(e) {
                    Some(off) => BundleError::at(file, src, off, msg),
                    None => BundleError::new(file, None, None, msg),
                });
            }
            return Vec::new();
        }
    };
    // The parser names policies policy0, policy1, … in source order and keeps
    // each one's exact text: find the texts in order to learn where each starts.
    let mut items: Vec<(usize, String, Option<&Policy>)> = pset
        .policies()
        .map(|p| (policy_index(p.id()), p.to_cedar().unwrap_or_default(), Some(p)))
        .chain(pset.templates().map(|t| (policy_index(t.id()), t.to_cedar(), None)))
        .collect();
    items.sort_by_key(|(i, _, _)| *i);
    if items.is_empty() {
        warnings.push(format!("{file}: contains no policies"));
    }
    let mut cursor = 0;
    let mut out = Vec::new();
    for (_, text, policy) in items {
        let offset = src.get(cursor..).and_then(|rest| rest.find(text.as_str())).map_or(cursor, |o| cursor + o);
        cursor = offset + text.len();
        let (line, col) = line_col(src, offset);
        let Some(policy) = policy else {
            errs.push(BundleError::new(
                file,
                Some(line),
                Some(col),
                "templates (policies with ?principal or ?resource) are not supported: name the principal or resource",
            ));
            continue;
        };
        let id = match policy.annotation("id") {
            Some(id) if id.trim().is_empty() || id.chars().any(char::is_control) => {
                errs.push(BundleError::new(file, Some(line), Some(col), "@id must be non-empty printable text"));
                continue;
            }
            Some(id) => id.to_string(),
            None => format!("{file}:{line}"),
        };
        out.push(ParsedPolicy { id, file: file.to_string(), line, policy: policy.clone() });
    }
    out
}

fn role_entity(role: &RoleSpec, uid: EntityUid) -> Result<Entity, String> {
    let secs = |d: std::time::Duration| RestrictedExpression::new_long(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let attrs: HashMap<String, RestrictedExpression> = [
        ("name", RestrictedExpression::new_string(role.name.clone())),
        ("max_duration_secs", secs(role.max_duration)),
        ("default_duration_secs", secs(role.default_duration)),
        ("approvals_required", RestrictedExpression::new_long(i64::from(role.approvals_required))),
        ("requires_mfa", RestrictedExpression::new_bool(role.require_mfa)),
        ("requires_reason", RestrictedExpression::new_bool(role.require_reason)),
        ("requires_ticket", RestrictedExpression::new_bool(role.require_ticket)),
        ("breakglass_allowed", RestrictedExpression::new_bool(role.breakglass.is_some())),
        ("breakglass_max_duration_secs", secs(role.breakglass.unwrap_or_default())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Entity::new(uid, attrs, HashSet::new()).map_err(|e| e.to_string())
}

impl Bundle {
    /// A bundle with no roles and no policies: every decision is a deny.
    pub fn empty() -> Bundle {
        let files = BTreeMap::new();
        Bundle {
            hash: bundle_hash(&files),
            files,
            roles: BTreeMap::new(),
            role_entities: HashMap::new(),
            policies: PolicySet::new(),
            policy_meta: BTreeMap::new(),
            warnings: Vec::new(),
            authorizer: std::sync::Arc::new(Authorizer::new()),
        }
    }

    /// Validate a bundle given as `relative path -> content`. Every problem in
    /// every file is reported, sorted by file and line.
    pub fn from_files(files: &BTreeMap<String, String>) -> Result<Bundle, BundleErrors> {
        let mut errs: Vec<BundleError> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        let (names, validator) = match (names(), validator()) {
            (Ok(n), Ok(v)) => (n, v),
            (Err(e), _) | (_, Err(e)) => {
                return Err(BundleErrors(vec![BundleError::new("", None, None, e)]));
            }
        };
        if files.len() > MAX_FILES {
            errs.push(BundleError::new(
                "",
                None,
                None,
                format!("a bundle holds at most {MAX_FILES} files, not {}", files.len()),
            ));
            return Err(BundleErrors(errs));
        }

        let mut roles: BTreeMap<String, RoleSpec> = BTreeMap::new();
        let mut parsed: Vec<ParsedPolicy> = Vec::new();
        for (path, src) in files {
            match classify(path) {
                Err(e) => errs.push(BundleError::new(path, None, None, e)),
                Ok(FileKind::Role) => match parse_role(path, src) {
                    Err(e) => errs.extend(e),
                    Ok(role) => match roles.get(&role.name) {
                        Some(other) => {
                            let line = src.lines().position(|l| l.trim_start().starts_with("name")).map(|i| i + 1);
                            errs.push(BundleError::new(
                                path,
                                line,
                                None,
                                format!("role {:?} is already defined in {}", role.name, other.file),
                            ));
                        }
                        None => {
                            roles.insert(role.name.clone(), role);
                        }
                    },
                },
                Ok(FileKind::Policy) => parsed.extend(parse_policy_file(path, src, &mut errs, &mut warnings)),
            }
        }

        // Ids must be unique across the bundle.
        let mut policies = PolicySet::new();
        let mut policy_meta: BTreeMap<String, PolicyMeta> = BTreeMap::new();
        for p in parsed {
            if let Some(first) = policy_meta.get(&p.id) {
                errs.push(BundleError::new(
                    &p.file,
                    Some(p.line),
                    None,
                    format!("duplicate policy id {:?}: already used at {}:{}", p.id, first.file, first.line),
                ));
                continue;
            }
            let policy = p.policy.new_id(PolicyId::new(&p.id));
            let canonical =
                policy.to_json().map(|j| j.to_string()).unwrap_or_else(|_| policy.to_cedar().unwrap_or_default());
            for uid in policy.entity_literals() {
                if uid.type_name().to_string() == ROLE_TYPE && !roles.contains_key(uid.id().unescaped()) {
                    warnings.push(format!(
                        "{}:{}: policy {:?} names {uid} but no role file defines role {:?}",
                        p.file,
                        p.line,
                        p.id,
                        uid.id().unescaped()
                    ));
                }
            }
            if let Err(e) = policies.add(policy) {
                errs.push(BundleError::new(&p.file, Some(p.line), None, e.to_string()));
                continue;
            }
            policy_meta.insert(p.id, PolicyMeta { file: p.file, line: p.line, canonical });
        }

        // Strict validation against the schema, located in the file each policy came from.
        let locate = |id: &PolicyId, d: &dyn Diagnostic| -> (String, Option<usize>, Option<usize>) {
            let Some(meta) = policy_meta.get(AsRef::<str>::as_ref(id)) else {
                return (String::new(), None, None);
            };
            let src = files.get(&meta.file).map_or("", String::as_str);
            match diagnostic_offset(d) {
                Some(off) => {
                    let (l, c) = line_col(src, off);
                    (meta.file.clone(), Some(l), Some(c))
                }
                None => (meta.file.clone(), Some(meta.line), None),
            }
        };
        // Every action shares one request shape, so the validator repeats each finding once per
        // action ("… in context for Action::"request" not found"): report it once, without the action.
        let result = validator.validate(&policies, ValidationMode::Strict);
        let mut seen = HashSet::new();
        for e in result.validation_errors() {
            let (file, line, col) = locate(e.policy_id(), e);
            let msg = without_action(&diagnostic_message(e));
            if seen.insert((file.clone(), line, col, msg.clone())) {
                errs.push(BundleError::new(&file, line, col, msg));
            }
        }
        for w in result.validation_warnings() {
            let (file, line, col) = locate(w.policy_id(), w);
            let msg = format!("warning: {}", without_action(&diagnostic_message(w)));
            let at = BundleError::new(&file, line, col, msg).to_string();
            if !warnings.contains(&at) {
                warnings.push(at);
            }
        }

        let mut role_entities = HashMap::new();
        for role in roles.values() {
            let uid = names.role_uid(&role.name);
            let entity = match role_entity(role, uid.clone()) {
                Ok(ent) => ent,
                Err(e) => {
                    errs.push(BundleError::new(&role.file, None, None, e));
                    continue;
                }
            };
            let mut by_action: [PolicySet; 4] = Default::default();
            for a in Action::ALL {
                let action_uid = names.action(a);
                let set = &mut by_action[a.index()];
                for p in policies.policies().filter(|p| scope_may_match(p, &uid, action_uid)) {
                    if let Err(e) = set.add(p.clone()) {
                        errs.push(BundleError::new(&role.file, None, None, e.to_string()));
                    }
                }
            }
            role_entities.insert(role.name.clone(), RoleEntry { uid, entity, by_action });
        }

        if !errs.is_empty() {
            errs.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            return Err(BundleErrors(errs));
        }
        Ok(Bundle {
            hash: bundle_hash(files),
            files: files.clone(),
            roles,
            role_entities,
            policies,
            policy_meta,
            warnings,
            authorizer: std::sync::Arc::new(Authorizer::new()),
        })
    }

    /// See [`bundle_hash`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    pub fn role(&self, name: &str) -> Option<&RoleSpec> {
        self.roles.get(name)
    }

    /// Roles in name order.
    pub fn roles(&self) -> impl Iterator<Item = &RoleSpec> {
        self.roles.values()
    }

    /// Policy ids, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        self.policy_meta.keys().cloned().collect()
    }

    /// File and 1-based start line of a policy.
    pub fn policy_location(&self, id: &str) -> Option<(&str, usize)> {
        self.policy_meta.get(id).map(|m| (m.file.as_str(), m.line))
    }

    /// Non-fatal findings: policies naming roles that do not exist, files
    /// without policies, Cedar validator warnings.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Ask Cedar whether `principal` may take `action` on `role` in `ctx`.
    ///
    /// Only the principal (with its groups as parents) and the role are given
    /// to Cedar. This is the policy decision only: the role file's own
    /// requirements are checked by [`RoleSpec::check_request`] and approvers
    /// by [`RoleSpec::is_approver`].
    ///
    /// Fails closed: an unknown role is a deny with an error, and if a
    /// `forbid` policy fails to evaluate the answer is a deny naming it.
    pub fn decide(&self, action: Action, principal: &PrincipalInfo, role: &str, ctx: &DecisionContext) -> Decision {
        self.decide_in(action, principal, role, ctx, false)
    }

    /// `decide`, against the role's pre-filtered policies or (`full_set`, for tests) all of them.
    fn decide_in(
        &self,
        action: Action,
        principal: &PrincipalInfo,
        role: &str,
        ctx: &DecisionContext,
        full_set: bool,
    ) -> Decision {
        let names = match names() {
            Ok(n) => n,
            Err(e) => return Decision::deny_with_error(e.to_string()),
        };
        let Some(entry) = self.role_entities.get(role) else {
            return Decision::deny_with_error(format!("unknown role {role:?}"));
        };
        let mut errors = Vec::new();

        let ptype = match principal.kind {
            latch_core::PrincipalKind::User => &names.user,
            latch_core::PrincipalKind::ServicePrincipal => &names.service_principal,
        };
        let puid = EntityUid::from_type_name_and_id(ptype.clone(), EntityId::new(&principal.name));
        let parents: HashSet<EntityUid> = principal
            .groups
            .iter()
            .map(|g| EntityUid::from_type_name_and_id(names.group.clone(), EntityId::new(g)))
            .collect();
        let pattrs = HashMap::from([("name".to_string(), RestrictedExpression::new_string(principal.name.clone()))]);
        let pent = match Entity::new(puid.clone(), pattrs, parents) {
            Ok(e) => e,
            Err(e) => return Decision::deny_with_error(format!("principal: {e}")),
        };
        let entities = match Entities::from_entities([pent, entry.entity.clone()], None) {
            Ok(e) => e,
            Err(e) => return Decision::deny_with_error(format!("entities: {e}")),
        };

        let ip = ctx.source_ip.trim();
        let ip = if ip.is_empty() {
            "0.0.0.0"
        } else if ip.parse::<std::net::IpAddr>().is_ok() {
            ip
        } else {
            errors.push(format!("source_ip {:?} is not an IP address; evaluated as 0.0.0.0", ctx.source_ip));
            "0.0.0.0"
        };
        let context = Context::from_pairs([
            ("mfa".to_string(), RestrictedExpression::new_bool(ctx.mfa)),
            ("acr".to_string(), RestrictedExpression::new_string(ctx.acr.clone())),
            (
                "amr".to_string(),
                RestrictedExpression::new_set(ctx.amr.iter().cloned().map(RestrictedExpression::new_string)),
            ),
            ("duration_secs".to_string(), RestrictedExpression::new_long(ctx.duration_secs)),
            ("hour".to_string(), RestrictedExpression::new_long(ctx.hour)),
            ("weekday".to_string(), RestrictedExpression::new_string(ctx.weekday.clone())),
            ("source_ip".to_string(), RestrictedExpression::new_ip(ip)),
            ("ticket".to_string(), RestrictedExpression::new_string(ctx.ticket.clone())),
            ("reason".to_string(), RestrictedExpression::new_string(ctx.reason.clone())),
            ("breakglass".to_string(), RestrictedExpression::new_bool(ctx.breakglass)),
        ]);
        let context = match context {
            Ok(c) => c,
            Err(e) => return Decision::deny_with_error(format!("context: {e}")),
        };
        let request = match Request::new(puid, names.action(action).clone(), entry.uid.clone(), context, None) {
            Ok(r) => r,
            Err(e) => return Decision::deny_with_error(format!("request: {e}")),
        };

        let set = if full_set { &self.policies } else { &entry.by_action[action.index()] };
        let response = self.authorizer.is_authorized(&request, set, &entities);
        let mut allowed = response.decision() == cedar_policy::Decision::Allow;
        let mut policies: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        let mut failed_forbids = Vec::new();
        for e in response.diagnostics().errors() {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(pe) = e;
            if self.policies.policy(pe.policy_id()).is_some_and(|p| p.effect() == Effect::Forbid) {
                failed_forbids.push(pe.policy_id().to_string());
            }
            errors.push(e.to_string());
        }
        if allowed && !failed_forbids.is_empty() {
            allowed = false;
            policies = failed_forbids;
        }
        policies.sort();
        errors.sort();
        Decision { allowed, policies, errors }
    }

    /// The whole rule for a new request by `principal` for `role`, as the
    /// server applies it (and `latch policy simulate` explains it):
    ///
    /// 1. unknown role, or the role file's requirements unmet
    ///    ([`RoleSpec::check_request`]) → `Denied`;
    /// 2. `ctx.breakglass`: `breakglass` permitted → `Active`, else `Denied`;
    /// 3. `request` not permitted → `Denied`;
    /// 4. `activate` permitted → `Active` (no approvals needed);
    /// 5. the role needs approvals → `Pending { approvals }`;
    /// 6. the role needs none (`required = 0`) but `activate` is not
    ///    permitted → `Denied` (nobody could ever approve it).
    pub fn evaluate_request(&self, principal: &PrincipalInfo, role: &str, ctx: &DecisionContext) -> RequestOutcome {
        let Some(spec) = self.roles.get(role) else {
            return RequestOutcome::Denied { reasons: vec![format!("unknown role {role:?}")], decision: None };
        };
        let unmet = spec.check_request(ctx);
        if !unmet.is_empty() {
            return RequestOutcome::Denied { reasons: unmet, decision: None };
        }
        let deny = |action: Action, d: Decision| RequestOutcome::Denied {
            reasons: vec![denial_reason(action, role, &d)],
            decision: Some(d),
        };
        if ctx.breakglass {
            let d = self.decide(Action::Breakglass, principal, role, ctx);
            return if d.allowed { RequestOutcome::Active { decision: d } } else { deny(Action::Breakglass, d) };
        }
        let d = self.decide(Action::Request, principal, role, ctx);
        if !d.allowed {
            return deny(Action::Request, d);
        }
        let activate = self.decide(Action::Activate, principal, role, ctx);
        if activate.allowed {
            RequestOutcome::Active { decision: activate }
        } else if spec.approvals_required > 0 {
            RequestOutcome::Pending { approvals: spec.approvals_required, decision: d }
        } else {
            RequestOutcome::Denied {
                reasons: vec![format!(
                    "role {role:?} has no approval step and {}",
                    denial_reason(Action::Activate, role, &activate)
                )],
                decision: Some(activate),
            }
        }
    }

    /// What applying `next` over `self` would change.
    pub fn plan(&self, next: &Bundle) -> Plan {
        let mut plan = Plan::default();
        for (name, role) in &next.roles {
            match self.roles.get(name) {
                None => plan.roles_added.push(name.clone()),
                Some(old) if !old.same_definition(role) => plan.roles_changed.push(name.clone()),
                Some(_) => {}
            }
        }
        plan.roles_removed = self.roles.keys().filter(|n| !next.roles.contains_key(*n)).cloned().collect();
        for (id, meta) in &next.policy_meta {
            match self.policy_meta.get(id) {
                None => plan.policies_added.push(id.clone()),
                Some(old) if old.canonical != meta.canonical => plan.policies_changed.push(id.clone()),
                Some(_) => {}
            }
        }
        plan.policies_removed =
            self.policy_meta.keys().filter(|id| !next.policy_meta.contains_key(*id)).cloned().collect();
        plan
    }
}

#[cfg(test)]
#[path = "bundle_tests.rs"]
mod tests;
