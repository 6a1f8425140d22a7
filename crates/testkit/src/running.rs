//! A service started in the test's own process.

use std::net::SocketAddr;
use std::time::Duration;

use kubescaler_server::Service;
use kubescaler_server::config::{CommonArgs, LogFormat};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Http;

/// Flags shared by every service, as tests want them: loopback, quiet, a short grace.
pub fn common_args() -> CommonArgs {
    CommonArgs {
        listen_address: "127.0.0.1".parse().unwrap(),
        log_format: LogFormat::Pretty,
        shutdown_grace: Duration::from_secs(5),
    }
}

/// A service running in-process; dropping it shuts it down.
pub struct Running {
    pub http: Http,
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Runs a service built with `shutdown` as its token.
    pub fn start(service: Service, shutdown: CancellationToken) -> Self {
        kubescaler_server::telemetry::init_for_tests();
        let addr = SocketAddr::from(([127, 0, 0, 1], service.port()));
        let task = tokio::spawn(service.run_until_stopped());
        Self { http: Http::new(addr), addr, shutdown, task: Some(task) }
    }

    /// Shuts the service down and waits until it has stopped serving, failing the test if it
    /// stopped on an error: a test that checks what a restart finds must know the first
    /// instance is gone, not only told to go.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
