//! The inputs and output of a policy decision.

use latch_core::PrincipalKind;
use serde::{Deserialize, Serialize};

/// The four Cedar actions latch asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// May this principal ask for the role? (checked when a request is created)
    Request,
    /// May this principal approve a request for the role? (checked per approval)
    Approve,
    /// May this request become active without approvals? (checked when it is created)
    Activate,
    /// May this principal take the role through break-glass?
    Breakglass,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Request, Action::Approve, Action::Activate, Action::Breakglass];

    /// The Cedar action id: `Action::"request"` etc.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Request => "request",
            Action::Approve => "approve",
            Action::Activate => "activate",
            Action::Breakglass => "breakglass",
        }
    }

    /// Position in [`Action::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Action::Request => 0,
            Action::Approve => 1,
            Action::Activate => 2,
            Action::Breakglass => 3,
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Who is asking: becomes `User::"name"` or `ServicePrincipal::"name"`,
/// with `Group::"g"` parents for each group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalInfo {
    pub kind: PrincipalKind,
    pub name: String,
    pub groups: Vec<String>,
}

impl PrincipalInfo {
    pub fn user(name: impl Into<String>, groups: &[&str]) -> Self {
        PrincipalInfo {
            kind: PrincipalKind::User,
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
        }
    }

    pub fn service_principal(name: impl Into<String>, groups: &[&str]) -> Self {
        PrincipalInfo {
            kind: PrincipalKind::ServicePrincipal,
            name: name.into(),
            groups: groups.iter().map(|g| (*g).to_string()).collect(),
        }
    }
}

/// The Cedar `context` record of a decision. Every field is always present.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionContext {
    /// The caller's session was established with MFA.
    pub mfa: bool,
    /// The `acr` the OpenID Connect provider asserted when the session was
    /// opened; empty for other sessions or when the provider sent none.
    #[serde(default)]
    pub acr: String,
    /// The `amr` values it asserted (RFC 8176: "pwd", "otp", "hwk"…).
    #[serde(default)]
    pub amr: Vec<String>,
    /// Requested grant duration in seconds.
    pub duration_secs: i64,
    /// Hour of day 0–23, UTC.
    pub hour: i64,
    /// Day of week, UTC: "mon", "tue", "wed", "thu", "fri", "sat", "sun".
    pub weekday: String,
    /// Caller's IP address (IPv4 or IPv6). Empty or invalid is evaluated as 0.0.0.0.
    pub source_ip: String,
    /// Ticket id, empty when none was given.
    pub ticket: String,
    /// Free-text reason, empty when none was given.
    pub reason: String,
    /// This is a break-glass request.
    pub breakglass: bool,
}

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl DecisionContext {
    /// A context at `unix_ms` (milliseconds since the epoch, UTC): `hour` and
    /// `weekday` are filled in, everything else is empty/false/zero.
    pub fn at(unix_ms: i64) -> Self {
        let mut c = DecisionContext {
            mfa: false,
            acr: String::new(),
            amr: Vec::new(),
            duration_secs: 0,
            hour: 0,
            weekday: String::new(),
            source_ip: String::new(),
            ticket: String::new(),
            reason: String::new(),
            breakglass: false,
        };
        c.set_time(unix_ms);
        c
    }

    /// Set `hour` and `weekday` from a unix time in milliseconds (UTC).
    pub fn set_time(&mut self, unix_ms: i64) {
        let (hour, weekday) = hour_and_weekday(unix_ms);
        self.hour = hour;
        self.weekday = weekday.to_string();
    }
}

/// UTC hour (0–23) and weekday ("mon".."sun") of a unix time in milliseconds.
pub fn hour_and_weekday(unix_ms: i64) -> (i64, &'static str) {
    const DAY_MS: i64 = 86_400_000;
    let day = unix_ms.div_euclid(DAY_MS);
    let hour = unix_ms.rem_euclid(DAY_MS) / 3_600_000;
    // 1970-01-01 was a Thursday (index 3 with Monday = 0).
    let idx = usize::try_from((day + 3).rem_euclid(7)).unwrap_or(0);
    (hour, WEEKDAYS.get(idx).copied().unwrap_or("mon"))
}

/// The answer to one question.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Ids of the policies that determined the decision: the permits that
    /// matched when allowed, the forbids that matched when denied (empty when
    /// denied because nothing permitted).
    pub policies: Vec<String>,
    /// Evaluation problems (unknown role, a policy that failed to evaluate, …).
    pub errors: Vec<String>,
}

impl Decision {
    pub(crate) fn deny_with_error(error: String) -> Self {
        Decision { allowed: false, policies: Vec::new(), errors: vec![error] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_helpers() {
        assert_eq!(hour_and_weekday(0), (0, "thu"));
        // 2024-06-03T14:30:00Z was a Monday
        assert_eq!(hour_and_weekday(1_717_425_000_000), (14, "mon"));
        // 2024-06-09T23:59:59Z, a Sunday
        assert_eq!(hour_and_weekday(1_717_977_599_000), (23, "sun"));
        // before the epoch: 1969-12-31T23:00Z was a Wednesday
        assert_eq!(hour_and_weekday(-3_600_000), (23, "wed"));
        let c = DecisionContext::at(1_717_425_000_000);
        assert_eq!((c.hour, c.weekday.as_str(), c.mfa, c.duration_secs), (14, "mon", false, 0));
    }

    #[test]
    fn action_names() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
            assert_eq!(Action::ALL[a.index()], a);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{}\"", a.as_str()));
        }
        assert_eq!(Action::parse("delete"), None);
    }
}
