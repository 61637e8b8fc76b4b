//! A torpor whose store and backend can be made to fail: small store and wake timeouts, the
//! S3 API server behind a [`Relay`], and settings of the backend server the test picks.

use crate::harness::{Opts, StoreKind, TestConfig, TestEnv};
use crate::relay::Relay;

/// How long one store operation and one wake may take in these tests: short, so a test sees
/// them fail quickly; the tests' own bounds are far longer.
pub const STORE_TIMEOUT: &str = "2s";
pub const WAKE_TIMEOUT: &str = "5s";

/// One torpor over an S3 store reached through a relay, with [`STORE_TIMEOUT`] and
/// [`WAKE_TIMEOUT`], and `settings` (`name = "value"` pairs) for the backend server.
pub async fn start(opts: Opts, settings: &[(&str, &str)]) -> (TestEnv, Relay) {
    let (cfg, relay) = config(opts, settings).await;
    (TestEnv::start_config(cfg).await, relay)
}

/// The config [`start`] runs, with its relay, for a test that starts torpor itself.
pub async fn config(opts: Opts, settings: &[(&str, &str)]) -> (TestConfig, Relay) {
    let opts = Opts {
        store: StoreKind::S3,
        ..opts
    }
    .proxy(&format!("wake_timeout = \"{WAKE_TIMEOUT}\""));
    let mut cfg = TestConfig::new(&opts).await;
    let s3 = cfg.s3.as_ref().expect("an S3 store");
    let endpoint = s3.endpoint.clone();
    let target = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("the S3 server's address");
    let relay = Relay::start(target).await;
    edit(
        &mut cfg,
        &format!("endpoint = \"{endpoint}\""),
        &format!("endpoint = \"http://{}\"", relay.addr),
    );
    edit(
        &mut cfg,
        "[state_store]\n",
        &format!("[state_store]\ntimeout = \"{STORE_TIMEOUT}\"\n"),
    );
    for (name, value) in settings {
        edit(
            &mut cfg,
            "settings = { ",
            &format!("settings = {{ {name} = \"{value}\", "),
        );
    }
    (cfg, relay)
}

/// Replaces `from` (which must be there) in the config.
fn edit(cfg: &mut TestConfig, from: &str, to: &str) {
    assert!(
        cfg.toml.contains(from),
        "{from:?} not in the config:\n{}",
        cfg.toml
    );
    cfg.toml = cfg.toml.replacen(from, to, 1);
    std::fs::write(&cfg.config_path, &cfg.toml).expect("write config");
}
