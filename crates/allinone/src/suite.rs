//! The running suite: the three services wired together, base on an internal port, main and
//! stream behind the front door.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use kubescaler_base::store::Store;
use kubescaler_main::Mount;
use kubescaler_server::Service;
use kubescaler_server::config::CommonArgs;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::backends;
use crate::banner::banner;
use crate::config::Config;

/// The running suite.
pub struct Suite {
    base: Service,
    front: Service,
    url: String,
    demo: bool,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Suite").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Builds every part, binds the internal and the front door ports; `run_until_stopped` serves.
pub async fn start(mut config: Config, shutdown: CancellationToken) -> anyhow::Result<Suite> {
    let registry = Registry::new();
    let internal = CommonArgs {
        listen_address: IpAddr::from([127, 0, 0, 1]),
        log_format: config.log_format,
        shutdown_grace: config.stream.common.shutdown_grace,
    };

    let store = backends::store(&config)?;
    let (changes, bindings) = backends::binding_changes(&config, &registry)?;
    let base_router = kubescaler_base::app(
        store.clone(),
        changes,
        &config.base.hostname,
        shutdown.clone(),
        registry.clone(),
    )?;
    let base = Service::bind("base", &internal, 0, base_router, shutdown.clone()).await?;
    let base_url = format!("http://127.0.0.1:{}", base.port());
    config.main.base.url = base_url.clone();
    config.stream.base.url = base_url;

    let (locks, launched) = backends::pair_registry(&config)?;
    let main = kubescaler_main::app(&config.main, launched, Mount::Root, shutdown.clone(), registry.clone())?;
    let kubescaler_stream::App { router: stream, refresher, .. } =
        kubescaler_stream::app(&config.stream, locks, bindings, shutdown.clone(), registry)?;

    let front_args = CommonArgs { listen_address: config.front.ip(), ..internal };
    let front_router = front_door(main, stream);
    let front = Service::bind("kubescaler", &front_args, config.front.port(), front_router, shutdown.clone())
        .await?
        .with_stream_buffers(config.stream.stream_sndbuf)
        .with_drain(refresher.drain());
    let shown =
        if config.front.ip().is_unspecified() { IpAddr::from([127, 0, 0, 1]) } else { config.front.ip() };
    let url = format!("http://{}", SocketAddr::new(shown, front.port()));
    Ok(Suite { base, front, url, demo: config.demo, store, shutdown })
}

/// Like the Ingress: /main and below to main, the rest to stream.
fn front_door(main: Router, stream: Router) -> Router {
    kubescaler_main::routes::under_prefix(main).merge(stream)
}

impl Suite {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.front.port()
    }

    /// Serves until the shutdown token fires. Prints where to go first once the front door
    /// answers (after the demo data, with `--demo`), so that it is the last thing on the screen.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (url, shutdown) = (self.url.clone(), self.shutdown.clone());
        let demo = self.demo.then(|| self.store.clone());
        tokio::spawn(async move {
            tokio::select! {
                text = banner(&url, demo) => println!("{text}"),
                () = shutdown.cancelled() => {}
            }
        });
        let (base, front) = tokio::join!(self.base.run_until_stopped(), self.front.run_until_stopped());
        base?;
        front?;
        Ok(())
    }
}
