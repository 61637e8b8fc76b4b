//! What every client session does whatever its protocol: take part in its cluster's lifecycle
//! (busy or idle, drains, parking, waking), save early snapshots, and end when told.

mod early;
mod ending;
pub mod error;
mod membership;

pub use ending::Ending;
pub use error::Error;
pub use membership::Membership;
