//! Cluster lifecycle, idle policy and backend drivers. Knows nothing about wire protocols.

pub mod cluster;
pub mod driver;

pub use cluster::{
    CheckpointReply, Cluster, ClusterState, ClusterStats, DrainCmd, Participant, Rejoin, Resume,
    SleepError, WakeCause,
};
pub use driver::{
    BackendConfig, BackendInfo, BackendState, BackendTls, BootstrapUser, Driver, DriverError,
    DriverStatus, Engine, TlsMode,
};
