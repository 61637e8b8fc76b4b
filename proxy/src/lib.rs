//! torpor: a stateful, database-aware serverless proxy. Sessions outlive the database process.

pub mod admin;
pub mod check;
pub mod cluster_front;
pub mod config;
mod learn;
pub mod metrics;
mod mysql;
mod net;
mod pg;
pub mod registry;
pub mod server;
mod session;
pub mod status;
