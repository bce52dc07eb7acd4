//! `ferbayes explore`: a local web page, and a JSON API under `/api/`, over one profile's
//! artifacts and your photos. Read-only: it reads the artifacts through `core::layout` and
//! `core::io::read_rows` and writes nothing.
//!
//! Pages (server-rendered HTML, a few lines of JS on the photo form):
//! - `/faces`: the test or valid faces of one arch × method at n samples, filtered, sorted and
//!   paged in memory ([`faces`]), each with its 48x48 image, the crowd's votes beside the
//!   model's mean probabilities, the entropy split and its conformal set;
//! - `/face/<split>/<image>`: one face's probabilities for every arch × method at n = 1..T;
//! - `/photo`: an upload through `ferbayes predict`'s detector, crop and model ([`photo`]);
//! - `/run`: `just status`'s table, the report's summary and its figures ([`runpage`]).
//!
//! The tables are loaded once per run key (the manifest keys of ingest, infer and analyze,
//! [`data::RunKey`]) and reloaded when a stage reruns. Requests carry names (arch, method,
//! split, an image or figure name checked against the loaded tables), never paths.

pub mod data;
pub mod error;
pub mod faces;
pub mod html;
pub mod photo;
pub mod runpage;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use ferbayes_core::{Layout, Settings};
use ferbayes_models::Backend;

pub use error::{ExploreError, Fail, Result};
pub use photo::MAX_UPLOAD_BYTES;

/// The address `ferbayes explore` listens on by default: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// What to serve and where.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// The profile's artifacts.
    pub layout: Layout,
    pub settings: Settings,
    /// The FER+ root, for the ingest line of the status table (None: the settings' `data_dir`).
    pub data_root: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Device and kernels of the photo page's models.
    pub device: Device,
    pub kernels: Backend,
}

impl ExploreOptions {
    /// Options for `layout` and `settings` on the CPU and its default kernels, listening on
    /// `listen`.
    pub fn new(layout: Layout, settings: Settings, listen: SocketAddr) -> Self {
        ExploreOptions {
            layout,
            settings,
            data_root: None,
            listen,
            device: Device::Cpu,
            kernels: Backend::default(),
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("explore")
        .build()
        .map_err(ExploreError::Runtime)
}

/// Loads the tables, binds and logs the address.
async fn bind(options: ExploreOptions) -> Result<(tokio::net::TcpListener, server::Shared)> {
    let start = Instant::now();
    let listen = options.listen;
    let state = server::AppState::new(options);
    if let Err(f) = state.current_run().await {
        tracing::warn!("explore: {}", f.message);
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ExploreError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ExploreError::Serve)?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "explore: listening on {addr}, reachable from other machines (read-only pages and photo uploads)"
        );
    }
    tracing::info!(
        "explore: http://{addr}/ serves profile `{}` ({}), ready in {:.2} s; Ctrl-C stops it",
        state.options.layout.profile(),
        state.options.layout.profile_dir().display(),
        start.elapsed().as_secs_f64()
    );
    Ok((listener, state))
}

/// Serves until Ctrl-C.
pub fn serve(options: ExploreOptions) -> Result<()> {
    runtime()?.block_on(async {
        let (listener, state) = bind(options).await?;
        axum::serve(listener, server::router(state))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(ExploreError::Serve)
    })
}

/// A server running on a thread of its own (for tests and benches); stopped when dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    /// Loads the tables, binds `options.listen` (port 0: a free port) and serves in the
    /// background; returns once it answers.
    pub fn start(options: ExploreOptions) -> Result<Server> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<SocketAddr>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("explore-server".into())
            .spawn(move || -> Result<()> {
                let rt = match runtime() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ExploreError::Runtime(std::io::Error::other(
                            e.to_string(),
                        ))));
                        return Err(e);
                    }
                };
                rt.block_on(async move {
                    let (listener, state) = match bind(options).await {
                        Ok(b) => b,
                        Err(e) => {
                            let message = e.to_string();
                            let _ = ready_tx.send(Err(e));
                            return Err(ExploreError::Serve(std::io::Error::other(message)));
                        }
                    };
                    let addr = listener.local_addr().map_err(ExploreError::Serve)?;
                    let _ = ready_tx.send(Ok(addr));
                    axum::serve(listener, server::router(state))
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                        .map_err(ExploreError::Serve)
                })
            })
            .map_err(ExploreError::Runtime)?;
        let addr = ready_rx.recv().map_err(|_| {
            ExploreError::Serve(std::io::Error::other("the server thread ended early"))
        })??;
        Ok(Server {
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
