//! The all-in-one process the tests load, started in the test's own process.

use std::path::PathBuf;
use std::time::Duration;

use kubescaler::Options;
use kubescaler_server::config::LogFormat;
use kubescaler_testkit::Http;
use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// The all-in-one on a fresh data directory with `profiles` profiles of 2 users as test data;
/// small messages keep the runs light.
pub struct Suite {
    pub url: String,
    dir: PathBuf,
    shutdown: CancellationToken,
}

impl Suite {
    /// `profiles` profiles of 2 users, the first one's users shared into every other one:
    /// 4 × profiles − 2 pairs.
    pub async fn start(name: &str, profiles: usize) -> Suite {
        let dir = std::env::temp_dir().join(format!("kubescaler-loadgen-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let options = Options {
            port: 0,
            listen_address: "127.0.0.1".parse().unwrap(),
            data_dir: dir.clone(),
            cassandra_nodes: None,
            redis_urls: None,
            demo: false,
            log_format: LogFormat::Pretty,
        };
        let mut config = options.into_config().unwrap();
        config.stream.stream_message_bytes = 1_000;
        let shutdown = CancellationToken::new();
        let suite = kubescaler::start(config, shutdown.clone()).await.unwrap();
        let http = Http::new(std::net::SocketAddr::from(([127, 0, 0, 1], suite.port())));
        let url = suite.url().to_owned();
        tokio::spawn(suite.run_until_stopped());
        http.wait_ready(Duration::from_secs(10)).await;
        let (status, _) =
            http.post(&format!("/main/testdata?profiles={profiles}&users_per_profile=2"), json!(null)).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        while http.get("/main/testdata").await.1["state"] == "running" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Suite { url, dir, shutdown }
    }
}

impl Drop for Suite {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
