//! What every client session does whatever its protocol: take part in its cluster's lifecycle
//! (busy or idle, drains, parking, waking), save early snapshots, and end when told.

mod backoff;
mod early;
mod ending;
mod engine;
pub(crate) mod error;
mod giving_way;
mod membership;
pub(crate) mod offload;
mod protocol;

pub(crate) use backoff::{Backoff, ready_by};
pub(crate) use ending::Ending;
pub(crate) use engine::Session;
pub(crate) use error::Error;
pub(crate) use membership::Membership;
pub(crate) use protocol::{Capture, Protocol, Step};

#[cfg(test)]
mod tests;
