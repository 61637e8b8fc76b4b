//! PyMySQL (mysql_native_password) and MySQL Connector/Python (caching_sha2_password fast
//! auth, server-side prepared statements) through torpor across scale-to-zero cycles. The
//! clients are installed into a virtualenv under the target directory on first use (PyPI).

use torpor_tests::clients::{client_file, my_env, run_to_end};
use torpor_tests::harness::{Opts, TestEnv};
use torpor_tests::python;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_and_connector_survive_scale_to_zero() {
    let python = python::python(python::my_clients).await;
    let env = TestEnv::start(Opts::mysql()).await;
    let mut cmd = tokio::process::Command::new(python);
    cmd.arg(client_file("my_clients.py"));
    my_env(&mut cmd, env.listen).env("TORPOR_DB", &env.cluster);
    run_to_end(env.admin_env(&mut cmd), "python mysql clients ok").await;
    env.shutdown().await;
}
