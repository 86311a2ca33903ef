//! The domain operations as SQL, written once for both backends.

pub(crate) mod child_tokens;
pub(crate) mod db_creds;
mod federation;
pub(crate) mod identity;
mod issuer_keys;
mod jit;
mod oidc;
mod recordings;
mod secrets;
pub(crate) mod ssh;
mod stats;
#[cfg(test)]
pub(crate) mod test_support;
