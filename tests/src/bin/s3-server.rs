//! The tests' S3 API server (s3s-fs) as a program of its own, for the compose test's S3
//! container (MinIO images can't be pulled here). Checks SigV4 signatures like a real one.
//! Settings from the environment: S3_LISTEN (default 0.0.0.0:9000), S3_ROOT (default /data),
//! S3_BUCKET (made at start), S3_ACCESS_KEY, S3_SECRET_KEY.

use anyhow::Context;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

fn var(name: &str, default: Option<&str>) -> anyhow::Result<String> {
    match (std::env::var(name), default) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(d)) => Ok(d.to_string()),
        (Err(_), None) => anyhow::bail!("{name} is not set"),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = var("S3_LISTEN", Some("0.0.0.0:9000"))?;
    let root = std::path::PathBuf::from(var("S3_ROOT", Some("/data"))?);
    let bucket = var("S3_BUCKET", None)?;
    std::fs::create_dir_all(root.join(&bucket)).context("making the bucket's directory")?;
    let fs = s3s_fs::FileSystem::new(&root).map_err(|e| anyhow::anyhow!("s3s-fs: {e:?}"))?;
    let service = {
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(
            var("S3_ACCESS_KEY", None)?,
            var("S3_SECRET_KEY", None)?,
        ));
        b.build()
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    eprintln!("s3-server: bucket {bucket} on {listen}");
    // As PID 1 of its container, SIGTERM does nothing unless handled: docker stop would wait
    // for its timeout and kill.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (socket, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = term.recv() => return Ok(()),
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}
