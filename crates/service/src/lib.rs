//! The recommendation service (docs/service.md): serves one pipeline run's artifacts over HTTP/JSON,
//! blending online recommendations (similar tracks of the latest listens, the ALS fold-in)
//! with offline or popular ones; an events store in memory or Redis and a durable event log;
//! rate limits, metrics, hot reload; tracks answered with their catalogue names.

pub mod blend;
pub mod catalogue;
pub mod error;
pub mod event_log;
pub mod events;
pub mod fold_in;
pub mod fold_in_cache;
pub mod http;
pub mod limits;
pub mod lists;
pub mod metrics;
pub mod model;
mod openapi;
pub mod redis_link;
mod web;

pub use error::ServiceError;
pub use http::{Server, Settings};

use std::net::SocketAddr;

/// Runs the service until Ctrl-C or SIGTERM (then shuts down within
/// `service.shutdown_grace_ms`); SIGHUP reloads the artifacts.
pub fn serve(settings: Settings, addr: SocketAddr) -> Result<(), ServiceError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServiceError::Serve)?;
    runtime.block_on(async move {
        let server = Server::start(settings, addr).await?;
        tracing::info!(addr = %server.local_addr(), "serving");
        let state = server.state();
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(ServiceError::Serve)?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the artifacts");
                let _ = state.reload().await;
            }
        });
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(ServiceError::Serve)?;
        server
            .run(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
                tracing::info!("shutting down");
            })
            .await;
        Ok(())
    })
}
