//! torpor: a stateful, database-aware serverless proxy. Sessions outlive the database process.

pub mod admin;
pub mod busy;
pub mod check;
pub mod cluster_front;
pub mod config;
mod door;
pub mod hash_password;
mod learn;
mod limits;
pub mod metrics;
mod mysql;
pub mod names;
mod net;
mod pg;
pub mod registry;
pub mod room;
pub mod rules;
pub mod server;
mod session;
mod snapshots;
pub mod status;
pub mod throttle;
mod tls;
