//! torpor: a stateful, database-aware serverless proxy. Sessions outlive the database process.

pub mod admin;
pub mod check;
pub mod config;
mod learn;
mod mysql;
mod net;
mod pg;
mod quiet;
pub mod registry;
mod seat;
pub mod server;
pub mod service;
pub mod status;
mod stop;
