//! How most tests begin and end: one torpor with a first client connected to it, and at the
//! end the clients leaving before torpor shuts down.

use mysql_async::Conn;

use crate::harness::{Opts, Pg, Protocol, TestEnv, describe, sqlstate};
use crate::mywire::MyRaw;

impl TestEnv {
    /// A PostgreSQL cluster with `opts`, and a client connected to it.
    pub async fn pg_session(opts: Opts) -> (TestEnv, Pg) {
        let env = TestEnv::start(opts).await;
        let client = env.connect().await;
        (env, client)
    }

    /// A PostgreSQL cluster with the default options, and a client connected to it that ran
    /// `setup`.
    pub async fn pg_session_with(setup: &str) -> (TestEnv, Pg) {
        let (env, client) = TestEnv::pg_session(Opts::default()).await;
        client.exec(setup).await;
        (env, client)
    }

    /// One more client, after running `setup`.
    pub async fn connect_with(&self, setup: &str) -> Pg {
        let client = self.connect().await;
        client.exec(setup).await;
        client
    }

    /// A MySQL cluster with `opts` (whatever protocol they name), and a client connected to it.
    pub async fn my_session(opts: Opts) -> (TestEnv, Conn) {
        let env = TestEnv::start(Opts {
            protocol: Protocol::Mysql,
            ..opts
        })
        .await;
        let client = env.my().await;
        (env, client)
    }

    /// `n` more clients, the `i`th after running `setup(i)`.
    pub async fn connect_each(&self, n: usize, setup: impl Fn(usize) -> String) -> Vec<Pg> {
        let mut clients = Vec::new();
        for i in 0..n {
            let c = self.connect().await;
            c.exec(&setup(i)).await;
            clients.push(c);
        }
        clients
    }

    /// A MySQL cluster with the default options, and a raw client logged in to it.
    pub async fn my_raw_session() -> (TestEnv, MyRaw) {
        let env = TestEnv::start(Opts::mysql()).await;
        let raw = env.my_raw().await;
        (env, raw)
    }

    /// Ends a test: `clients` close first, as clients do (each session parks and its snapshot
    /// goes), so the shutdown has no client to tell; then [`TestEnv::shutdown`].
    pub async fn shutdown_after<T>(self, clients: T) {
        drop(clients);
        self.shutdown().await;
    }
}

impl Pg {
    /// The connection ends with an error whose SQLSTATE is `code` (57P01 when torpor shuts down).
    pub async fn assert_ended_with(self, code: &str) {
        let err = self
            .ended()
            .await
            .expect_err("connection ended without an error");
        assert_eq!(sqlstate(&err), Some(code), "{}", describe(&err));
    }
}
