//! The shared servers every integration test runs against, and free ports for the ones a test
//! starts itself.

use tokio::net::TcpStream;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Cassandra contact points (`CASSANDRA_NODES`), after checking the first one answers.
pub async fn require_cassandra() -> Vec<String> {
    let nodes: Vec<String> =
        env_or("CASSANDRA_NODES", "127.0.0.1:9042").split(',').map(str::to_owned).collect();
    if TcpStream::connect(&nodes[0]).await.is_err() {
        panic!(
            "Cassandra is not reachable at {} (CASSANDRA_NODES). Start it with `scripts/services.sh up`.",
            nodes[0]
        );
    }
    nodes
}

/// The shared Redis's URL (`REDIS_URL`, default `redis://127.0.0.1:6379`), unchecked: where a
/// service that only announces (base) is pointed.
pub fn shared_redis_url() -> String {
    env_or("REDIS_URL", "redis://127.0.0.1:6379")
}

/// The shared Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`), after checking it answers.
pub async fn require_redis() -> String {
    let url = shared_redis_url();
    let addr = url.trim_start_matches("redis://").trim_end_matches('/');
    if TcpStream::connect(addr).await.is_err() {
        panic!("Redis is not reachable at {addr} (REDIS_URL). Start it with `scripts/services.sh up`.");
    }
    url
}

/// A free TCP port on 127.0.0.1 that nothing listens on (connections are refused).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
