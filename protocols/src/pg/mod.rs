//! PostgreSQL frontend/backend protocol v3.

pub mod capture;
pub mod frame;
pub mod local;
pub mod message;
pub mod options;
pub mod parse;
pub mod replay;
pub mod snapshot;
pub mod sql;
pub mod tracker;
pub mod txn;
