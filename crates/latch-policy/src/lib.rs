//! latch-policy: policy as code for just-in-time elevation.
//!
//! A bundle is `roles/*.toml` (one role per file: limits, approvals,
//! requirements, break-glass, token audiences) plus `policies/*.cedar`
//! (who may request, approve, self-activate or break-glass into which role,
//! under which conditions). [`Bundle::from_files`] validates a whole bundle,
//! given as `relative path -> content`, and reports every problem with its
//! file and line; [`Bundle::decide`] answers one question with Cedar.
//!
//! No IO: files arrive as strings, time arrives as a unix timestamp.
//!
//! Cedar vocabulary (see [`SCHEMA`]), without a namespace:
//! principals `User::"alice"` / `ServicePrincipal::"ci"`, each `in` its
//! `Group::"ops"` entities; resource `Role::"prod-db-admin"`; actions
//! `Action::"request"`, `"approve"`, `"activate"`, `"breakglass"`.
//! A policy's id is its `@id("…")` annotation, unique across the bundle,
//! or else `<file>:<line>` of where it starts (`policies/base.cedar:12`).
#![forbid(unsafe_code)]

pub mod bundle;
pub mod context;
pub mod error;
pub mod pg_template;
pub mod role;
pub mod schema;

pub use bundle::{Bundle, Plan, RequestOutcome, bundle_hash};
pub use context::{Action, Decision, DecisionContext, PrincipalInfo, hour_and_weekday};
pub use error::{BundleError, BundleErrors};
pub use role::{Approver, PostgresSpec, RoleSpec, SecretsSpec, TokenSpec};
pub use schema::{SCHEMA, schema};
