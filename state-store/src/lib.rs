//! Durable storage for parked-session snapshots.
//!
//! A snapshot is any serde value, wrapped in a versioned, checksummed [`envelope`] that also
//! names the cluster and session it belongs to, and stored through `object_store` at
//! `<prefix>/<cluster>/<session-uuid>` on S3, a local directory or memory.

mod config;
pub mod envelope;
mod error;
mod key;
mod store;

pub use config::StoreConfig;
pub use error::StoreError;
pub use key::SnapshotKey;
pub use store::Store;
