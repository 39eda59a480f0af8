//! The Bulkhead side of `bulkhead-bench pocketbase`, and the in-process server of `http`,
//! `engine` (its HTTP bulk row), `move` and `postgres --only http|flood`: a temporary data
//! directory, the `bulkhead` library's `config::Config::load` and `serve::open`, then
//! `bulkhead_server::serve`, on its own two-worker runtime in its own thread.
//!
//! Why its own runtime: PocketBase runs in another process with its own Go scheduler, while
//! the load generator runs on the bench's runtime. Were Bulkhead served from that same runtime,
//! server and generator would share two worker threads and the two systems would not be
//! measured under the same conditions. Both still share the machine's two cores.

use std::sync::Arc;

use anyhow::Context;
use bulkhead_core::time::SystemClock;
use tokio::sync::oneshot;

pub const ADMIN_KEY: &str = "bench-admin-key-0123456789";

/// A Bulkhead server running on a dedicated runtime thread until [`InProcess::stop`].
pub struct InProcess {
    pub url: String,
    /// The server's catalog (`metering` turns its metering off and on between rounds).
    pub catalog: bulkhead_catalog::Catalog,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    pub async fn start() -> anyhow::Result<InProcess> {
        InProcess::start_with(bulkhead::config::ServeArgs::default()).await
    }

    /// Starts with these serve settings (the listen address is always a free loopback port).
    pub async fn start_with(args: bulkhead::config::ServeArgs) -> anyhow::Result<InProcess> {
        InProcess::start_in(args, None).await
    }

    /// [`InProcess::start_with`] on the data directory `data_dir` (kept after `stop`), or a
    /// temporary one.
    pub async fn start_in(
        args: bulkhead::config::ServeArgs,
        data_dir: Option<std::path::PathBuf>,
    ) -> anyhow::Result<InProcess> {
        let (ready, is_ready) =
            oneshot::channel::<anyhow::Result<(String, bulkhead_catalog::Catalog)>>();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bulkhead-server".into())
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(super::machine::SERVER_THREAD_NAME)
                    // Idle blocking threads stay, so their CPU time stays countable.
                    .thread_keep_alive(std::time::Duration::from_secs(3600))
                    .enable_all()
                    .build()?;
                runtime.block_on(serve(args, data_dir, ready, stopped))
            })?;
        let (url, catalog) = is_ready
            .await
            .context("the bulkhead server thread ended during start-up")??;
        Ok(InProcess {
            url,
            catalog,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Drains the server, closes the catalog and joins the thread.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join())
                .await?
                .map_err(|_| anyhow::anyhow!("the bulkhead server thread panicked"))??;
        }
        Ok(())
    }
}

async fn serve(
    args: bulkhead::config::ServeArgs,
    data_dir: Option<std::path::PathBuf>,
    ready: oneshot::Sender<anyhow::Result<(String, bulkhead_catalog::Catalog)>>,
    stopped: oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let started = async {
        let dir = tempfile::tempdir()?;
        let args = bulkhead::config::ServeArgs {
            listen: Some("127.0.0.1:0".into()),
            ..args
        };
        let data_dir = data_dir.unwrap_or_else(|| dir.path().join("data"));
        let config =
            bulkhead::config::Config::load(&args, Some(&data_dir), Some(ADMIN_KEY.into()))?;
        let node = bulkhead::serve::open(
            &config,
            Arc::new(SystemClock),
            bulkhead_engine::conformance::authority(),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        anyhow::Ok((dir, node, listener, url))
    }
    .await;
    let (dir, node, listener, url) = match started {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Ok(());
        }
    };
    let _ = ready.send(Ok((url, node.catalog.clone())));
    let served = bulkhead_server::serve(listener, node.state.clone(), async {
        let _ = stopped.await;
    })
    .await;
    node.catalog.shutdown().await;
    drop(node);
    drop(dir);
    served?;
    Ok(())
}
