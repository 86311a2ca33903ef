//! The Cedar schema every policy is validated against, and the entity and
//! action names built from it.

use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Schema, Validator};

use crate::context::Action;

/// The Cedar schema (Cedar schema syntax). There is no namespace: policies
/// write `User::"alice"`, `Group::"ops"`, `Role::"prod-db-admin"`,
/// `Action::"request"`.
pub const SCHEMA: &str = r#"// latch policy schema. Entity types have no namespace.
// A user or service principal is `in` each group it belongs to.
entity Group;
entity User in [Group] { name: String };
entity ServicePrincipal in [Group] { name: String };

// A role, with the limits from its roles/NAME.toml file (durations in seconds).
entity Role {
  name: String,
  max_duration_secs: Long,
  default_duration_secs: Long,
  approvals_required: Long,
  requires_mfa: Bool,
  requires_reason: Bool,
  requires_ticket: Bool,
  breakglass_allowed: Bool,
  breakglass_max_duration_secs: Long,  // 0 when break-glass is not allowed
};

action request, approve, activate, breakglass appliesTo {
  principal: [User, ServicePrincipal],
  resource: [Role],
  context: {
    mfa: Bool,            // the caller's session used MFA
    acr: String,          // the OIDC provider's acr for the session's sign-in, "" when none
    amr: Set<String>,     // its amr values ("pwd", "otp", "hwk"...), empty when none
    duration_secs: Long,  // requested grant duration
    hour: Long,           // 0-23, UTC
    weekday: String,      // "mon" .. "sun", UTC
    source_ip: ipaddr,    // the caller's address (0.0.0.0 when unknown)
    ticket: String,       // "" when none
    reason: String,       // "" when none
    breakglass: Bool,
  }
};
"#;

pub const USER_TYPE: &str = "User";
pub const SERVICE_PRINCIPAL_TYPE: &str = "ServicePrincipal";
pub const GROUP_TYPE: &str = "Group";
pub const ROLE_TYPE: &str = "Role";
pub const ACTION_TYPE: &str = "Action";

/// Parsed names reused by every decision (parsing them each time would cost more than the decision).
pub(crate) struct Names {
    pub user: EntityTypeName,
    pub service_principal: EntityTypeName,
    pub group: EntityTypeName,
    pub role: EntityTypeName,
    actions: [EntityUid; 4],
}

impl Names {
    pub fn action(&self, a: Action) -> &EntityUid {
        &self.actions[a.index()]
    }

    pub fn role_uid(&self, name: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.role.clone(), EntityId::new(name))
    }
}

fn build_names() -> Result<Names, String> {
    let t = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
    let action = t(ACTION_TYPE)?;
    let act = |a: Action| EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a.as_str()));
    Ok(Names {
        user: t(USER_TYPE)?,
        service_principal: t(SERVICE_PRINCIPAL_TYPE)?,
        group: t(GROUP_TYPE)?,
        role: t(ROLE_TYPE)?,
        actions: [act(Action::Request), act(Action::Approve), act(Action::Activate), act(Action::Breakglass)],
    })
}

static NAMES: LazyLock<Result<Names, String>> = LazyLock::new(build_names);

static VALIDATOR: LazyLock<Result<Validator, String>> = LazyLock::new(|| {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(schema, _warnings)| Validator::new(schema))
        .map_err(|e| format!("internal error: the built-in Cedar schema does not parse: {e}"))
});

pub(crate) fn names() -> Result<&'static Names, &'static str> {
    NAMES.as_ref().map_err(String::as_str)
}

pub(crate) fn validator() -> Result<&'static Validator, &'static str> {
    VALIDATOR.as_ref().map_err(String::as_str)
}

/// The parsed schema (for tools such as `latch policy simulate` or editors).
pub fn schema() -> Option<&'static Schema> {
    validator().ok().map(Validator::schema)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_schema_parses() {
        assert!(validator().is_ok(), "{:?}", validator().err());
        assert!(names().is_ok());
        let s = schema().unwrap();
        let mut actions: Vec<String> = s.actions().map(ToString::to_string).collect();
        actions.sort();
        assert_eq!(
            actions,
            vec![r#"Action::"activate""#, r#"Action::"approve""#, r#"Action::"breakglass""#, r#"Action::"request""#]
        );
    }
}
