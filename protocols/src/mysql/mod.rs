//! MySQL/MariaDB wire protocol (CLIENT_PROTOCOL_41 only), sans-IO.

pub mod command;
pub mod handshake;
pub mod packet;
pub mod response;
pub mod response_tracker;

// Session state: what a parked session holds, how to capture and replay it.
pub mod capture;
pub mod connection_id;
pub mod contained;
pub mod local;
pub mod reads;
pub mod replay;
pub mod rows;
pub mod snapshot;
pub mod sql;
pub mod statements;
pub mod tracked;
pub mod tracker;
pub mod txn;
pub mod uservars;
