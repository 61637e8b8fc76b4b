//! Password authentication math shared by the client-facing and backend-facing sides.

pub mod md5;
pub mod mysql;
pub mod scram;
