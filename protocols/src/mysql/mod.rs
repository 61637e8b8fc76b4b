//! MySQL/MariaDB wire protocol (CLIENT_PROTOCOL_41 only), sans-IO.

pub mod command;
pub mod handshake;
pub mod packet;
pub mod response;
