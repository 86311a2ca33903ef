//! HTTP routes, one module per resource.

pub mod audit;
pub mod auth;
pub mod db;
pub mod exchange;
pub mod federations;
pub mod gateway;
pub mod groups;
pub mod jit;
pub mod metrics;
pub mod oidc_login;
pub mod policy;
pub mod recordings;
pub mod slo;
pub mod sps;
pub mod ssh;
pub mod sys;
pub mod tokens;
pub mod users;
pub mod vault;

use latch_core::validate_name;

use crate::error::ApiError;

/// Validates a name taken from a URL path, so hostile paths get a precise 400.
pub(crate) fn path_name(kind: &'static str, name: &str) -> Result<(), ApiError> {
    validate_name(kind, name).map_err(ApiError::from)
}

/// Runs Argon2id off the async workers: it is deliberately slow.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, latch_crypto::CryptoError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?.map_err(ApiError::from)
}

pub(crate) fn check_password_policy(password: &str) -> Result<(), ApiError> {
    use latch_crypto::password::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(ApiError::BadRequest(format!(
            "password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long"
        )));
    }
    Ok(())
}
