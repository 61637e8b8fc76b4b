//! shared helpers for end-to-end tests
pub mod s3;
