//! asyncpg and psycopg 3 (named protocol statements, COPY, pipeline mode, LISTEN) through
//! torpor across scale-to-zero cycles. The clients are installed into a virtualenv under the
//! target directory on first use (PyPI), so nothing outside the repository is touched.

use torpor_tests::clients::{pg_python, run_to_end};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asyncpg_and_psycopg_survive_scale_to_zero() {
    let (env, mut cmd) = pg_python("pg_clients.py").await;
    run_to_end(env.admin_env(&mut cmd), "python clients ok").await;
    env.shutdown().await;
}
