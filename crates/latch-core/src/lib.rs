//! latch-core: the domain vocabulary of latch and the logic that needs no IO.
//!
//! Everything here is deterministic given its inputs: time arrives through a
//! [`Clock`], randomness arrives as bytes from the caller. That keeps the
//! rules that guard privileged access (name validation, durations, rate
//! limits) testable without a server, and lets tests move time instead of
//! sleeping.
#![forbid(unsafe_code)]

pub mod clock;
pub mod duration;
pub mod federation;
pub mod histogram;
pub mod jit;
pub mod name;
pub mod principal;
pub mod ratelimit;

pub use clock::{Clock, ManualClock, OffsetClock, SystemClock, Timestamp};
pub use duration::{DurationError, format_duration, parse_duration};
pub use histogram::{Histogram, HistogramSnapshot};
pub use jit::RequestState;
pub use name::{NameError, validate_name};
pub use principal::{Principal, PrincipalKind};
