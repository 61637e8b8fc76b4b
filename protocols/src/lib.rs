//! Sans-IO protocol code: wire codecs, auth math, session trackers, capture and replay plans.
//! Nothing here touches a socket; the proxy drives it.

pub mod auth;
pub mod mysql;
pub mod pg;
