//! Who is acting: an authenticated principal as the rest of latch sees it.

use serde::{Deserialize, Serialize};

/// The group whose members administer latch itself.
pub const ADMIN_GROUP: &str = "admins";
/// The group of the service principals that run `latch gateway`: they may
/// check users' certificates, get upstream certificates and record sessions
/// under anyone's grant, and nothing else beyond what any principal may.
pub const GATEWAY_GROUP: &str = "ssh-gateways";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    User,
    ServicePrincipal,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServicePrincipal => "service_principal",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(PrincipalKind::User),
            "service_principal" => Some(PrincipalKind::ServicePrincipal),
            _ => None,
        }
    }
}

/// An authenticated caller, resolved afresh from the store on every request so
/// that disabling an identity or leaving a group takes effect at once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub kind: PrincipalKind,
    pub groups: Vec<String>,
    /// Whether the session behind this request was established with a second factor.
    pub mfa: bool,
    pub session_id: String,
    /// The `acr` an OpenID Connect provider asserted at sign-in ("" otherwise).
    pub acr: String,
    /// The `amr` values it asserted (empty otherwise).
    pub amr: Vec<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }
    pub fn is_gateway(&self) -> bool {
        self.groups.iter().any(|g| g == GATEWAY_GROUP)
    }
    /// How the principal is named in audit events: `user:alice`, `service_principal:ci`.
    pub fn audit_name(&self) -> String {
        format!("{}:{}", self.kind.as_str(), self.name)
    }
}
