//! Durable storage for parked-session snapshots.
//!
//! A snapshot is any serde value, sealed (AES-256-GCM) in a versioned [`envelope`] whose
//! header names the cluster, session, user and database it belongs to, and stored through
//! `object_store` at `<prefix>/<instance>/<cluster>/<session-uuid>` on S3, a local directory
//! or memory.

mod config;
mod deadline;
mod duration;
pub mod envelope;
mod error;
mod key;
pub mod seal;
pub mod sealed;
mod store;

pub use config::StoreConfig;
pub use duration::parse_duration;
pub use error::StoreError;
pub use key::{SnapshotKey, check_owner};
pub use seal::Seal;
pub use store::Store;
