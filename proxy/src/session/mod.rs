//! What every client session does whatever its protocol: take part in its cluster's lifecycle
//! (busy or idle, drains, parking, waking), save early snapshots, and end when told.

mod early;
mod ending;
mod engine;
pub mod error;
mod membership;
mod protocol;

pub use ending::Ending;
pub use engine::Session;
pub use error::Error;
pub use membership::Membership;
pub use protocol::{Capture, Protocol, Step};

#[cfg(test)]
mod tests;
