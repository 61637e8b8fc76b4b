//! Cluster lifecycle, idle policy and backend drivers. Knows nothing about wire protocols but
//! the first bytes a server sends when it is ready (`driver/ready.rs`).

mod chain;
pub mod cluster;
pub mod driver;

pub use chain::error_chain;

pub use cluster::{
    BusyGuard, CheckpointReply, Cluster, ClusterState, ClusterStats, DrainCheck, DrainCmd, Hold,
    Participant, Rejoin, Resume, SleepError, WakeCause,
};
pub use driver::{
    BackendConfig, BackendInfo, BackendState, BackendTls, BootstrapUser, Driver, DriverError,
    DriverStatus, Engine, TlsMode,
};
