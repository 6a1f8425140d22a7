//! An outage on demand: a TCP hop in front of a real server.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::free_port;

/// A TCP forwarder that can be taken down and brought back on the same port, standing in for
/// a server that becomes unreachable and then returns.
pub struct Forwarder {
    pub addr: SocketAddr,
    target: String,
    stop: Option<CancellationToken>,
}

impl Forwarder {
    /// A free port on which nothing listens yet: connections are refused until [`open`].
    ///
    /// [`open`]: Forwarder::open
    pub fn reserve(target: &str) -> Self {
        Self { addr: SocketAddr::from(([127, 0, 0, 1], free_port())), target: target.to_owned(), stop: None }
    }

    /// Starts forwarding to the target.
    pub async fn open(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        let stop = CancellationToken::new();
        let target = self.target.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    () = token.cancelled() => return,
                    accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => return },
                };
                let target = target.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        () = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        self.stop = Some(stop);
    }

    /// Stops listening and cuts every forwarded connection.
    pub fn close(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.close();
    }
}
