//! The access-request state machine.
//!
//! ```text
//! Pending ──approve×N──► Active ──ttl──► Expired
//!    │  └─deny──► Denied       └─revoke──► Revoked
//!    ├─cancel──► Cancelled
//!    └─timeout─► TimedOut
//! Break-glass and auto-approved requests are created directly Active.
//! ```
//! Storage enforces each transition with a compare-and-set on the current
//! state, so two racing transitions cannot both succeed.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Active,
    Expired,
    Revoked,
    Denied,
    Cancelled,
    TimedOut,
}

impl RequestState {
    pub const ALL: [RequestState; 7] = [
        RequestState::Pending,
        RequestState::Active,
        RequestState::Expired,
        RequestState::Revoked,
        RequestState::Denied,
        RequestState::Cancelled,
        RequestState::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Active => "active",
            RequestState::Expired => "expired",
            RequestState::Revoked => "revoked",
            RequestState::Denied => "denied",
            RequestState::Cancelled => "cancelled",
            RequestState::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the machine allows `self → to`.
    pub fn can_become(self, to: RequestState) -> bool {
        use RequestState::*;
        matches!((self, to), (Pending, Active | Denied | Cancelled | TimedOut) | (Active, Expired | Revoked))
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RequestState::Pending | RequestState::Active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        use RequestState::*;
        for s in RequestState::ALL {
            assert_eq!(RequestState::parse(s.as_str()), Some(s));
        }
        assert!(Pending.can_become(Active));
        assert!(Active.can_become(Revoked));
        assert!(!Active.can_become(Pending));
        assert!(!Denied.can_become(Active));
        assert!(!Expired.can_become(Revoked));
        for s in [Expired, Revoked, Denied, Cancelled, TimedOut] {
            assert!(s.is_final());
            assert!(RequestState::ALL.iter().all(|t| !s.can_become(*t)));
        }
    }
}
