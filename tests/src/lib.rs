//! shared helpers for end-to-end tests
pub mod asleep;
pub mod binary;
pub mod clients;
pub mod fixture;
pub mod harness;
pub mod http;
pub mod java;
pub mod mysql;
pub mod mywire;
pub mod node;
pub mod ports;
pub mod probes;
pub mod python;
pub mod relay;
pub mod s3;
pub mod script;
pub mod wire;
