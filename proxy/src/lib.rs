//! torpor: a stateful, database-aware serverless proxy. Sessions outlive the database process.

pub mod admin;
pub mod check;
pub mod config;
mod learn;
pub mod metrics;
mod mysql;
mod net;
mod pg;
pub mod registry;
pub mod server;
pub mod service;
mod session;
pub mod status;
