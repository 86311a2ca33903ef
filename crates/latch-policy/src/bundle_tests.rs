use std::time::Instant;

use super::*;
use crate::role::Approver;

const ROLE_A: &str = "name = \"db\"\nmax_duration = \"4h\"\n[approval]\nrequired = 2\napprovers = [\"group:dba-leads\"]\n[requirements]\nmfa = true\n";
const ROLE_B: &str = "name = \"web\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n";

fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

fn load(pairs: &[(&str, &str)]) -> Bundle {
    match Bundle::from_files(&files(pairs)) {
        Ok(b) => b,
        Err(e) => {
            assert!(e.is_empty(), "bundle should load:\n{e}");
            Bundle::empty()
        }
    }
}

fn errors(pairs: &[(&str, &str)]) -> Vec<BundleError> {
    match Bundle::from_files(&files(pairs)) {
        Ok(b) => {
            assert!(b.roles.is_empty() && b.roles.is_empty(), "bundle should not load: {b:?}");
            Vec::new()
        }
        Err(e) => e.0,
    }
}

fn ctx(duration_secs: i64, mfa: bool) -> DecisionContext {
    // Monday 2024-06-03 14:30 UTC
    let mut c = DecisionContext::at(1_717_425_000_000);
    c.duration_secs = duration_secs;
    c.mfa = mfa;
    c.reason = "work".into();
    c.source_ip = "10.1.2.3".into();
    c
}

fn example_files() -> BTreeMap<String, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policy");
    let mut out = BTreeMap::new();
    for dir in [ROLES_DIR, POLICIES_DIR] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap();
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            out.insert(format!("{dir}/{name}"), std::fs::read_to_string(&path).unwrap());
        }
    }
    out
}

#[test]
fn bundle_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Bundle>();
}

#[test]
fn empty_bundle_denies_everything() {
    let b = Bundle::empty();
    assert_eq!(b.hash(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(b.roles().count(), 0);
    assert!(b.policy_ids().is_empty());
    let d = b.decide(Action::Request, &PrincipalInfo::user("alice", &["ops"]), "db", &ctx(60, true));
    assert!(!d.allowed);
    assert_eq!(d.errors, vec!["unknown role \"db\"".to_string()]);
    // an empty file map is a valid, empty bundle
    let e = Bundle::from_files(&BTreeMap::new()).unwrap();
    assert_eq!(e.hash(), b.hash());
    assert!(b.plan(&e).is_empty());
}

#[test]
fn example_bundle_validates_and_decides() {
    let files = example_files();
    assert!(files.len() >= 5, "{:?}", files.keys());
    let b = match Bundle::from_files(&files) {
        Ok(b) => b,
        Err(e) => {
            assert!(e.is_empty(), "examples/policy must validate:\n{e}");
            return;
        }
    };
    assert!(b.warnings().is_empty(), "{:?}", b.warnings());
    let names: Vec<&str> = b.roles().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["platform-admin", "prod-db-admin", "prod-oncall"]);
    assert_eq!(b.role("prod-db-admin").unwrap().approvals_required, 2);
    assert!(b.policy_ids().contains(&"oncall-self-activate".to_string()));

    // on call: self-activation with MFA at any hour
    let alice = PrincipalInfo::user("alice", &["engineering", "oncall"]);
    let mut night = ctx(7200, true);
    night.set_time(1_717_376_400_000); // 2024-06-03 01:00 UTC
    let d = b.decide(Action::Activate, &alice, "prod-oncall", &night);
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policies, vec!["oncall-self-activate".to_string()]);
    let d = b.decide(Action::Activate, &alice, "prod-oncall", &ctx(7200, false));
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["role-requires-mfa".to_string()]);
    // not on call: may request, not activate
    let bob = PrincipalInfo::user("bob", &["engineering"]);
    let d = b.decide(Action::Activate, &bob, "prod-oncall", &ctx(3600, true));
    assert!(!d.allowed && d.policies.is_empty(), "{d:?}");
    let d = b.decide(Action::Request, &bob, "prod-oncall", &ctx(3600, true));
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["engineers-may-request".to_string()]);
    let d = b.decide(Action::Request, &bob, "prod-oncall", &ctx(9 * 3600, true));
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["never-beyond-max-duration".to_string()]);

    // database: ticket kinds and business hours
    let dave = PrincipalInfo::user("dave", &["dba"]);
    let mut c = ctx(3600, true);
    c.ticket = "CHG-12".into();
    let d = b.decide(Action::Request, &dave, "prod-db-admin", &c);
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policies, vec!["dba-request-db".to_string()]);
    c.set_time(1_717_837_200_000); // Saturday 2024-06-08 09:00 UTC
    let d = b.decide(Action::Request, &dave, "prod-db-admin", &c);
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["db-changes-in-business-hours".to_string()]);
    c.ticket = "INC-9".into();
    assert!(b.decide(Action::Request, &dave, "prod-db-admin", &c).allowed);
    c.ticket = "JIRA-1".into();
    assert!(!b.decide(Action::Request, &dave, "prod-db-admin", &c).allowed);
    c.ticket = "INC-9".into();
    c.duration_secs = 3 * 3600;
    let d = b.decide(Action::Request, &dave, "prod-db-admin", &c);
    assert_eq!(d.policies, vec!["db-admin-at-most-2h".to_string()]);

    // approvals need MFA; approver lists live in the role file
    let carol = PrincipalInfo::user("carol", &[]);
    assert!(b.decide(Action::Approve, &carol, "prod-db-admin", &ctx(3600, true)).allowed);
    assert!(!b.decide(Action::Approve, &carol, "prod-db-admin", &ctx(3600, false)).allowed);
    assert!(b.role("prod-db-admin").unwrap().is_approver("carol", &[]));

    // break-glass
    let eve = PrincipalInfo::user("eve", &["sre"]);
    let mut bg = ctx(1800, true);
    bg.breakglass = true;
    let d = b.decide(Action::Breakglass, &eve, "platform-admin", &bg);
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policies, vec!["sre-breakglass".to_string()]);
    assert!(!b.decide(Action::Breakglass, &eve, "prod-oncall", &bg).allowed, "role does not allow it");
    bg.duration_secs = 7200;
    assert!(!b.decide(Action::Breakglass, &eve, "platform-admin", &bg).allowed, "beyond break-glass max");
    bg.duration_secs = 1800;
    let robot = PrincipalInfo::service_principal("robot", &["sre"]);
    let d = b.decide(Action::Breakglass, &robot, "platform-admin", &bg);
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["no-machine-breakglass".to_string()]);
}

#[test]
fn groups_are_parents_and_forbid_overrides_permit() {
    let b = load(&[
        ("roles/db.toml", ROLE_A),
        ("roles/web.toml", ROLE_B),
        (
            "policies/p.cedar",
            r#"@id("ops-request")
permit (principal in Group::"ops", action == Action::"request", resource)
when { context.duration_secs <= resource.max_duration_secs };

@id("sp-request-web")
permit (principal == ServicePrincipal::"ci", action == Action::"request", resource == Role::"web");

@id("mfa-for-mfa-roles")
forbid (principal, action, resource) when { resource.requires_mfa && !context.mfa };

@id("no-mallory")
forbid (principal == User::"mallory", action, resource);
"#,
        ),
    ]);
    let alice = PrincipalInfo::user("alice", &["dev", "ops"]);
    let d = b.decide(Action::Request, &alice, "db", &ctx(3600, true));
    assert_eq!(d, Decision { allowed: true, policies: vec!["ops-request".into()], errors: vec![] });
    // duration condition
    let d = b.decide(Action::Request, &alice, "db", &ctx(5 * 3600, true));
    assert!(!d.allowed && d.policies.is_empty());
    // mfa condition: forbid overrides the permit and is named
    let d = b.decide(Action::Request, &alice, "db", &ctx(3600, false));
    assert_eq!(d, Decision { allowed: false, policies: vec!["mfa-for-mfa-roles".into()], errors: vec![] });
    // web does not require mfa
    assert!(b.decide(Action::Request, &alice, "web", &ctx(600, false)).allowed);
    // not in the group
    assert!(!b.decide(Action::Request, &PrincipalInfo::user("bob", &["dev"]), "db", &ctx(60, true)).allowed);
    // two forbids
    let mallory = PrincipalInfo::user("mallory", &["ops"]);
    let d = b.decide(Action::Request, &mallory, "db", &ctx(60, false));
    assert_eq!(d.policies, vec!["mfa-for-mfa-roles".to_string(), "no-mallory".to_string()]);
    // action is part of the question
    assert!(!b.decide(Action::Activate, &alice, "db", &ctx(60, true)).allowed);
    // service principals are a different entity type from users of the same name
    let ci = PrincipalInfo::service_principal("ci", &[]);
    assert!(b.decide(Action::Request, &ci, "web", &ctx(60, false)).allowed);
    assert!(!b.decide(Action::Request, &PrincipalInfo::user("ci", &[]), "web", &ctx(60, false)).allowed);
    // unknown role
    let d = b.decide(Action::Request, &alice, "nope", &ctx(60, true));
    assert!(!d.allowed && d.errors == vec!["unknown role \"nope\"".to_string()]);
}

#[test]
fn context_ip_hour_weekday_ticket() {
    let b = load(&[
        ("roles/web.toml", ROLE_B),
        (
            "policies/p.cedar",
            r#"@id("office")
permit (principal, action == Action::"request", resource)
when {
  context.source_ip.isInRange(ip("10.0.0.0/8")) &&
  context.weekday != "sun" && context.hour >= 8 && context.hour < 18 &&
  context.ticket like "INC-*" && context.reason != ""
};
"#,
        ),
    ]);
    let u = PrincipalInfo::user("u", &[]);
    let mut c = ctx(60, false);
    c.ticket = "INC-1".into();
    assert!(b.decide(Action::Request, &u, "web", &c).allowed);
    c.source_ip = "192.168.1.1".into();
    assert!(!b.decide(Action::Request, &u, "web", &c).allowed);
    c.source_ip = "::1".into();
    assert!(!b.decide(Action::Request, &u, "web", &c).allowed);
    c.source_ip = "not-an-ip".into();
    let d = b.decide(Action::Request, &u, "web", &c);
    assert!(!d.allowed);
    assert!(d.errors.iter().any(|e| e.contains("not an IP address")), "{d:?}");
    c.source_ip = "10.0.0.1".into();
    c.hour = 7;
    assert!(!b.decide(Action::Request, &u, "web", &c).allowed);
    c.hour = 9;
    c.weekday = "sun".into();
    assert!(!b.decide(Action::Request, &u, "web", &c).allowed);
    c.weekday = "mon".into();
    c.reason.clear();
    assert!(!b.decide(Action::Request, &u, "web", &c).allowed);
}

#[test]
fn evaluation_error_in_forbid_fails_closed() {
    let b = load(&[
        ("roles/web.toml", ROLE_B),
        (
            "policies/p.cedar",
            r#"@id("all") permit (principal, action, resource);
@id("overflowing") forbid (principal, action, resource) when { context.duration_secs * 2 > 10 };
"#,
        ),
    ]);
    let u = PrincipalInfo::user("u", &[]);
    assert!(b.decide(Action::Request, &u, "web", &ctx(1, false)).allowed);
    let d = b.decide(Action::Request, &u, "web", &ctx(i64::MAX, false));
    assert!(!d.allowed, "{d:?}");
    assert_eq!(d.policies, vec!["overflowing".to_string()]);
    assert_eq!(d.errors.len(), 1, "{d:?}");
}

#[test]
fn policy_ids_from_annotation_or_position() {
    let b = load(&[
        ("roles/web.toml", ROLE_B),
        (
            "policies/a.cedar",
            "// header\n\npermit (principal, action == Action::\"request\", resource);\n\n@id(\"named\")\npermit (principal, action == Action::\"approve\", resource);\n  forbid (principal == User::\"x\", action, resource);\n",
        ),
        (
            "policies/b.cedar",
            "@id(\"other\") @reason(\"x\")\npermit (principal, action == Action::\"activate\", resource);\n",
        ),
    ]);
    assert_eq!(b.policy_ids(), vec!["named", "other", "policies/a.cedar:3", "policies/a.cedar:7"]);
    assert_eq!(b.policy_location("named"), Some(("policies/a.cedar", 5)));
    assert_eq!(b.policy_location("other"), Some(("policies/b.cedar", 1)));
    let d = b.decide(Action::Request, &PrincipalInfo::user("y", &[]), "web", &ctx(60, false));
    assert_eq!(d.policies, vec!["policies/a.cedar:3".to_string()]);
}

#[test]
fn cedar_syntax_error_reports_file_and_line() {
    let errs = errors(&[
        ("roles/web.toml", ROLE_B),
        ("policies/ok.cedar", "permit (principal, action, resource);\n"),
        (
            "policies/bad.cedar",
            "permit (principal, action, resource);\n\n// third line is a comment\npermit (principal, action, resource) when { context.mfa = };\n",
        ),
    ]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!((e.file.as_str(), e.line), ("policies/bad.cedar", Some(4)), "{e}");
    assert!(e.column.is_some_and(|c| c > 40), "{e}");
    assert!(e.to_string().starts_with("policies/bad.cedar:4:"), "{e}");
}

#[test]
fn cedar_validation_error_reports_file_and_line() {
    let errs = errors(&[
        ("roles/web.toml", ROLE_B),
        (
            "policies/v.cedar",
            "@id(\"fine\")\npermit (principal, action, resource);\n\n@id(\"uses-foo\")\npermit (principal, action, resource)\nwhen {\n  context.foo == 1\n};\n",
        ),
    ]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    assert_eq!((e.file.as_str(), e.line), ("policies/v.cedar", Some(7)), "{e}");
    assert_eq!(e.column, Some(3), "{e}");
    assert_eq!(e.message, "for policy `uses-foo`, attribute `foo` in context not found (help: did you mean `acr`?)");

    // unknown entity type, attribute of the wrong type, unknown action
    let errs = errors(&[
        ("roles/web.toml", ROLE_B),
        (
            "policies/v.cedar",
            "permit (principal == Team::\"x\", action, resource);\npermit (principal, action, resource) when { context.hour == \"9\" };\npermit (principal, action == Action::\"delete\", resource);\n",
        ),
    ]);
    let lines: Vec<_> = errs.iter().map(|e| (e.file.as_str(), e.line)).collect();
    assert_eq!(
        lines,
        vec![("policies/v.cedar", Some(1)), ("policies/v.cedar", Some(2)), ("policies/v.cedar", Some(3))],
        "{errs:?}"
    );
}

#[test]
fn duplicate_id_is_an_error() {
    let errs = errors(&[
        ("policies/a.cedar", "@id(\"same\")\npermit (principal, action, resource);\n"),
        ("policies/b.cedar", "\n\n@id(\"same\")\nforbid (principal, action, resource);\n"),
    ]);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!((errs[0].file.as_str(), errs[0].line), ("policies/b.cedar", Some(3)));
    assert!(errs[0].message.contains("policies/a.cedar:1"), "{}", errs[0]);
}

#[test]
fn templates_and_stray_files_are_errors() {
    let errs = errors(&[
        ("README.md", "hi"),
        ("roles/x.yaml", "name: x"),
        ("roles/sub/x.toml", ROLE_B),
        ("policies/t.cedar", "\npermit (principal == ?principal, action, resource);\n"),
    ]);
    let got: Vec<(&str, Option<usize>)> = errs.iter().map(|e| (e.file.as_str(), e.line)).collect();
    assert_eq!(
        got,
        vec![("README.md", None), ("policies/t.cedar", Some(2)), ("roles/sub/x.toml", None), ("roles/x.yaml", None)],
        "{errs:?}"
    );
    assert!(errs[1].message.contains("templates"));
}

#[test]
fn all_errors_across_files_are_collected() {
    let errs = errors(&[
        ("roles/a.toml", "name = \"a\"\nmax_duration = \"1h\"\nfoo = 1\n[approval]\nrequired = 0\n"),
        ("roles/b.toml", "name = \"b\"\nmax_duration = \"1h\"\ndefault_duration = \"2h\"\n[approval]\nrequired = 0\n"),
        ("roles/c.toml", "name = \"c\"\nmax_duration = \"1h\"\n[approval]\nrequired = 2\n"),
        (
            "roles/d.toml",
            "name = \"d\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n[requirements]\nticket_pattern = \"[\"\n",
        ),
        ("roles/e.toml", "name = \"e\"\nmax_duration = \"forever\"\n[approval]\nrequired = 0\n"),
        ("roles/f.toml", ROLE_B),
        ("roles/g.toml", ROLE_B),
        ("policies/p.cedar", "permit (principal, action, resource) when { context.foo };\n"),
        ("policies/q.cedar", "\npermit (principal action, resource);\n"),
    ]);
    let got: Vec<(&str, Option<usize>)> = errs.iter().map(|e| (e.file.as_str(), e.line)).collect();
    assert_eq!(
        got,
        vec![
            ("policies/p.cedar", Some(1)),
            ("policies/q.cedar", Some(2)),
            ("roles/a.toml", Some(3)),
            ("roles/b.toml", Some(3)),
            ("roles/c.toml", Some(4)),
            ("roles/d.toml", Some(6)),
            ("roles/e.toml", Some(2)),
            ("roles/g.toml", Some(1)),
        ],
        "{}",
        BundleErrors(errs.clone())
    );
    assert!(errs[7].message.contains("already defined in roles/f.toml"), "{}", errs[7]);
    let all = BundleErrors(errs).to_string();
    assert_eq!(all.lines().count(), 8, "{all}");
}

#[test]
fn unknown_role_in_policy_is_a_warning() {
    let b = load(&[
        ("roles/web.toml", ROLE_B),
        (
            "policies/p.cedar",
            "\n@id(\"ghostly\")\npermit (principal, action, resource)\nwhen { resource == Role::\"web\" || resource == Role::\"ghost\" };\n",
        ),
        ("policies/empty.cedar", "// nothing yet\n"),
    ]);
    assert_eq!(b.warnings().len(), 2, "{:?}", b.warnings());
    assert!(b.warnings().iter().any(|w| w == "policies/empty.cedar: contains no policies"));
    assert!(
        b.warnings()
            .iter()
            .any(|w| w.starts_with("policies/p.cedar:2: policy \"ghostly\"") && w.contains("Role::\"ghost\"")),
        "{:?}",
        b.warnings()
    );
}

#[test]
fn hash_is_stable_and_content_sensitive() {
    let f = files(&[("roles/web.toml", ROLE_B), ("roles/db.toml", ROLE_A)]);
    let a = Bundle::from_files(&f).unwrap();
    let b = Bundle::from_files(&f).unwrap();
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a.hash(), bundle_hash(&f));
    assert_eq!(a.hash().len(), 64);
    assert_eq!(a.files(), &f);
    let mut g = f.clone();
    g.insert("roles/web.toml".into(), format!("{ROLE_B}# comment\n"));
    assert_ne!(Bundle::from_files(&g).unwrap().hash(), a.hash());
    // length prefixes keep path/content boundaries apart
    assert_ne!(bundle_hash(&files(&[("ab", "c")])), bundle_hash(&files(&[("a", "bc")])));
    // pinned value so the scheme cannot drift silently
    let mut h = Sha256::new();
    h.update(1u64.to_be_bytes());
    h.update(b"a");
    h.update(2u64.to_be_bytes());
    h.update(b"bc");
    assert_eq!(bundle_hash(&files(&[("a", "bc")])), data_encoding::HEXLOWER.encode(&h.finalize()));
}

#[test]
fn plan_shows_changes() {
    let p1 = "@id(\"keep\")\npermit (principal, action == Action::\"request\", resource);\n@id(\"edit\")\npermit (principal in Group::\"ops\", action, resource);\n@id(\"drop\")\nforbid (principal == User::\"x\", action, resource);\n";
    let old = load(&[("roles/db.toml", ROLE_A), ("roles/web.toml", ROLE_B), ("policies/p.cedar", p1)]);
    assert!(old.plan(&old).is_empty());
    let same = load(&[("roles/db.toml", ROLE_A), ("roles/web.toml", ROLE_B), ("policies/p.cedar", p1)]);
    assert!(old.plan(&same).is_empty());

    // layout and comments are not changes; moving a role to another file is not either
    let p1_reflowed = format!("// reformatted\n{}", p1.replace("permit (", "permit(\n  "));
    let moved =
        load(&[("roles/database.toml", ROLE_A), ("roles/web.toml", ROLE_B), ("policies/p.cedar", &p1_reflowed)]);
    assert!(old.plan(&moved).is_empty(), "{:?}", old.plan(&moved));

    let p2 = "@id(\"keep\")\npermit (principal, action == Action::\"request\", resource);\n@id(\"edit\")\npermit (principal in Group::\"sre\", action, resource);\n@id(\"new\")\nforbid (principal == User::\"y\", action, resource);\n";
    let web2 = ROLE_B.replace("\"1h\"", "\"2h\"");
    let ops = "name = \"ops\"\nmax_duration = \"1h\"\n[approval]\nrequired = 0\n";
    let new = load(&[("roles/web.toml", &web2), ("roles/ops.toml", ops), ("policies/p.cedar", p2)]);
    let plan = old.plan(&new);
    assert_eq!(
        plan,
        Plan {
            roles_added: vec!["ops".into()],
            roles_removed: vec!["db".into()],
            roles_changed: vec!["web".into()],
            policies_added: vec!["new".into()],
            policies_removed: vec!["drop".into()],
            policies_changed: vec!["edit".into()],
        }
    );
    assert!(!plan.is_empty());
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["roles_added"][0], "ops");
    // and back again
    let back = new.plan(&old);
    assert_eq!(back.roles_added, vec!["db".to_string()]);
    assert_eq!(back.policies_removed, vec!["new".to_string()]);
    // from nothing
    let from_empty = Bundle::empty().plan(&old);
    assert_eq!(from_empty.roles_added, vec!["db".to_string(), "web".to_string()]);
    assert_eq!(from_empty.policies_added.len(), 3);
}

#[test]
fn roles_are_exposed() {
    let b = load(&[("roles/db.toml", ROLE_A)]);
    let r = b.role("db").unwrap();
    assert_eq!(r.approvers, vec![Approver::Group("dba-leads".into())]);
    assert!(r.require_mfa);
    assert_eq!(r.file, "roles/db.toml");
    assert!(b.role("web").is_none());
}

/// 100 roles, 1,000 principals in 50 groups: every decision is right, and
/// decisions stay far from the tens-of-milliseconds range even unoptimised.
#[test]
fn decides_across_a_large_bundle() {
    let mut f = BTreeMap::new();
    let mut pol = String::new();
    for i in 0..100 {
        f.insert(
            format!("roles/r{i}.toml"),
            format!("name = \"role-{i}\"\nmax_duration = \"{}h\"\n[approval]\napprovers = [\"group:leads-{i}\"]\n[requirements]\nmfa = {}\n", 1 + i % 8, i % 2 == 0),
        );
        pol.push_str(&format!(
            "@id(\"team-{g}-role-{i}\")\npermit (principal in Group::\"team-{g}\", action == Action::\"request\", resource == Role::\"role-{i}\")\nwhen {{ context.duration_secs <= resource.max_duration_secs }};\n",
            g = i % 50
        ));
    }
    pol.push_str(
        "@id(\"mfa\")\nforbid (principal, action, resource) when { resource.requires_mfa && !context.mfa };\n",
    );
    pol.push_str("@id(\"weekend\")\nforbid (principal, action, resource) when { context.weekday == \"sun\" && context.hour < 6 };\n");
    f.insert("policies/teams.cedar".into(), pol);
    let b = Bundle::from_files(&f).unwrap();
    assert_eq!(b.roles().count(), 100);
    assert_eq!(b.policy_ids().len(), 102);

    let principals: Vec<PrincipalInfo> = (0..1000)
        .map(|p| PrincipalInfo {
            kind: if p % 10 == 0 {
                latch_core::PrincipalKind::ServicePrincipal
            } else {
                latch_core::PrincipalKind::User
            },
            name: format!("p{p}"),
            groups: vec![format!("team-{}", p % 50), "everyone".to_string()],
        })
        .collect();
    let c = ctx(1800, true);
    let start = Instant::now();
    let mut n = 0u32;
    for (p, who) in principals.iter().enumerate() {
        for i in [p % 100, (p + 1) % 100, (p + 37) % 100] {
            let d = b.decide(Action::Request, who, &format!("role-{i}"), &c);
            let expected = i % 50 == p % 50;
            assert_eq!(d.allowed, expected, "p{p} role-{i}: {d:?}");
            if expected {
                assert_eq!(d.policies, vec![format!("team-{}-role-{i}", p % 50)]);
            }
            n += 1;
        }
    }
    let per = start.elapsed() / n;
    assert!(per.as_millis() < 5, "{per:?} per decision");
}

/// The per-role, per-action policy subsets give exactly the answers of the whole set.
#[test]
fn prefiltered_policies_decide_like_the_full_set() {
    let b = load(&[
        ("roles/db.toml", ROLE_A),
        ("roles/web.toml", ROLE_B),
        (
            "policies/p.cedar",
            r#"permit (principal, action, resource is Role) when { context.duration_secs < 100 };
permit (principal in Group::"ops", action in [Action::"request", Action::"activate"], resource == Role::"db");
permit (principal is User in Group::"dev", action == Action::"approve", resource in Role::"web");
permit (principal, action == Action::"breakglass", resource is Role in Role::"web") when { context.breakglass };
forbid (principal == User::"mallory", action, resource);
forbid (principal, action in [Action::"activate"], resource) when { resource.requires_mfa && !context.mfa };
forbid (principal, action, resource == Role::"web") when { context.duration_secs * 1000000000000 > 5 };
"#,
        ),
    ]);
    let people = [
        PrincipalInfo::user("alice", &["ops"]),
        PrincipalInfo::user("dan", &["dev"]),
        PrincipalInfo::user("mallory", &["ops", "dev"]),
        PrincipalInfo::service_principal("ci", &["dev", "ops"]),
    ];
    let mut checked = 0;
    for who in &people {
        for role in ["db", "web", "nope"] {
            for action in Action::ALL {
                for (secs, mfa, bg) in [(50, true, false), (3600, false, true), (i64::MAX / 2, true, true)] {
                    let mut c = ctx(secs, mfa);
                    c.breakglass = bg;
                    let fast = b.decide(action, who, role, &c);
                    let full = b.decide_in(action, who, role, &c, true);
                    assert_eq!(fast, full, "{who:?} {action:?} {role} {c:?}");
                    checked += usize::from(fast.allowed);
                }
            }
        }
    }
    assert!(checked > 10, "the cases should include allows, got {checked}");
}

#[test]
fn evaluate_request_combines_role_file_and_policies() {
    let b = Bundle::from_files(&example_files()).unwrap();
    let alice = PrincipalInfo::user("alice", &["engineering", "oncall"]);
    let bob = PrincipalInfo::user("bob", &["engineering"]);
    let dave = PrincipalInfo::user("dave", &["dba"]);
    let eve = PrincipalInfo::user("eve", &["sre"]);

    let out = b.evaluate_request(&alice, "prod-oncall", &ctx(3600, true));
    assert!(
        matches!(&out, RequestOutcome::Active { decision } if decision.policies == vec!["oncall-self-activate".to_string()]),
        "{out:?}"
    );
    let out = b.evaluate_request(&bob, "prod-oncall", &ctx(3600, true));
    assert!(matches!(out, RequestOutcome::Pending { approvals: 1, .. }), "{out:?}");
    let json = serde_json::to_value(&out).unwrap();
    assert_eq!(json["outcome"], "pending");
    assert_eq!(json["approvals"], 1);

    // role-file requirements come first, with reasons for the requester
    let out = b.evaluate_request(&bob, "prod-oncall", &ctx(3600, false));
    assert!(
        matches!(&out, RequestOutcome::Denied { reasons, decision: None } if reasons[0].contains("requires a session with MFA")),
        "{out:?}"
    );
    let mut c = ctx(3600, true);
    let out = b.evaluate_request(&dave, "prod-db-admin", &c);
    assert!(
        matches!(&out, RequestOutcome::Denied { reasons, .. } if reasons[0].contains("requires a ticket")),
        "{out:?}"
    );
    c.ticket = "CHG-1".into();
    assert!(matches!(b.evaluate_request(&dave, "prod-db-admin", &c), RequestOutcome::Pending { approvals: 2, .. }));
    // policy denial names the policy
    c.set_time(1_717_837_200_000); // Saturday
    let out = b.evaluate_request(&dave, "prod-db-admin", &c);
    assert!(
        matches!(&out, RequestOutcome::Denied { reasons, decision: Some(_) } if reasons[0].contains("db-changes-in-business-hours")),
        "{out:?}"
    );
    let out = b.evaluate_request(&PrincipalInfo::user("zed", &[]), "prod-oncall", &ctx(60, true));
    assert!(
        matches!(&out, RequestOutcome::Denied { reasons, .. } if reasons[0] == "no policy permits request on role \"prod-oncall\""),
        "{out:?}"
    );
    assert!(b.evaluate_request(&bob, "nope", &ctx(60, true)).is_denied());

    // break-glass
    let mut bg = ctx(1800, true);
    bg.breakglass = true;
    assert!(matches!(b.evaluate_request(&eve, "platform-admin", &bg), RequestOutcome::Active { .. }));
    assert!(b.evaluate_request(&bob, "platform-admin", &bg).is_denied());
    assert!(b.evaluate_request(&eve, "prod-oncall", &bg).is_denied());

    // required = 0 without an activate permit is a denial, not a request nobody can approve
    let z = load(&[
        ("roles/web.toml", ROLE_B),
        ("policies/p.cedar", "permit (principal, action == Action::\"request\", resource);\n"),
    ]);
    let out = z.evaluate_request(&bob, "web", &ctx(60, false));
    assert!(
        matches!(&out, RequestOutcome::Denied { reasons, .. } if reasons[0].contains("no approval step")),
        "{out:?}"
    );
}

#[test]
fn the_providers_acr_and_amr_reach_the_context() {
    let b = load(&[
        ("roles/web.toml", ROLE_B),
        (
            "policies/p.cedar",
            r#"@id("strong-sign-in")
permit (principal, action == Action::"request", resource)
when { context.acr == "urn:example:loa2" || context.amr.contains("hwk") };
"#,
        ),
    ]);
    let alice = PrincipalInfo::user("alice", &[]);
    let mut c = ctx(600, false);
    assert!(!b.decide(Action::Request, &alice, "web", &c).allowed, "no acr: \"\", no amr: empty");
    c.acr = "urn:example:loa1".into();
    assert!(!b.decide(Action::Request, &alice, "web", &c).allowed);
    c.acr = "urn:example:loa2".into();
    let d = b.decide(Action::Request, &alice, "web", &c);
    assert!(d.allowed && d.errors.is_empty(), "{d:?}");
    c.acr = String::new();
    c.amr = vec!["pwd".into(), "hwk".into()];
    assert!(b.decide(Action::Request, &alice, "web", &c).allowed);
}
