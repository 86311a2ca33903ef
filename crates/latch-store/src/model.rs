//! Records as stored. Secret material appears here only as hashes (and the
//! TOTP seed, which must be readable to verify codes).

use latch_core::{PrincipalKind, Timestamp};

#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: String,
    pub name: String,
    pub password_hash: Option<String>,
}

#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub name: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub totp_secret: Option<String>,
    pub totp_confirmed: bool,
    pub totp_last_step: Option<i64>,
    pub created_at: Timestamp,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created_at: Timestamp,
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub kind: PrincipalKind,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct NewServicePrincipal {
    pub id: String,
    pub name: String,
    pub description: String,
    pub secret_hash: String,
}

#[derive(Clone, Debug)]
pub struct ServicePrincipal {
    pub id: String,
    pub name: String,
    pub description: String,
    pub secret_hash: String,
    pub secret_rotated_at: Timestamp,
    pub disabled: bool,
    pub created_at: Timestamp,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct NewSession {
    pub id: String,
    pub token_hash: String,
    pub principal_id: String,
    pub principal_kind: PrincipalKind,
    pub mfa: bool,
    pub source: String,
    pub expires_at: Timestamp,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: String,
    pub principal_id: String,
    pub principal_kind: PrincipalKind,
    pub mfa: bool,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}
