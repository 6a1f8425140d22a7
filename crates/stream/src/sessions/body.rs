//! The SSE body of an open stream: the newest frame of the feed whenever there is one, a
//! heartbeat when messages are rare, and a final event when the refresher or a shutdown ends
//! it. The [`StreamGuard`] it owns is the stream's end on every path.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kubescaler_sse::RECONNECT_AFTER_MS;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use super::{End, Sessions};
use crate::feed::{self, Frame};
use crate::locks::Lease;

/// A comment line keeps idle connections (and proxies) from timing out when messages are rare.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// What clients are told to wait before reconnecting after a shutdown.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);
/// What a handed-off client is told to wait: its lock is already free; the short pause only
/// spreads the reconnections of a hand-off over a moment instead of one instant.
const REBALANCE_RETRY: Duration = Duration::from_millis(250);
/// Held by an open stream; its drop is the stream's end on every path.
#[derive(Debug)]
pub(crate) struct StreamGuard {
    pub(super) id: u64,
    pub(super) lease: Lease,
    pub(super) sessions: Arc<Sessions>,
    /// The stream's place among `MAX_CONNECTIONS`, given back with the guard.
    pub(super) _permit: OwnedSemaphorePermit,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let sessions = &self.sessions;
        sessions.metrics.active.dec();
        tracing::info!(user = %self.lease.user, profile = %self.lease.profile, stream = self.id, "stream closed");
        // Still registered means no refresher verdict: the client left, or the service stops
        // and its drain has not reached this pair. The release is spawned under the lock the
        // drain takes, so the drain's wait for spawned releases cannot miss it.
        let mut state = sessions.state();
        let client_side = state.held.remove(&self.id).is_some();
        if client_side && (sessions.config.release_on_disconnect || sessions.shutdown.is_cancelled()) {
            let (locks, lease) = (sessions.locks.clone(), self.lease.clone());
            sessions.releases.spawn(async move { locks.release(&[lease]).await });
        }
        drop(state);
    }
}

/// An admitted stream, ready to become a response body.
#[derive(Debug)]
pub struct OpenStream {
    pub(super) guard: StreamGuard,
    pub(super) end: oneshot::Receiver<End>,
}

struct BodyState {
    guard: Option<StreamGuard>,
    end: oneshot::Receiver<End>,
    /// Made once per stream: registering a new waiter per frame costs more than the frame.
    shutdown: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    feed: watch::Receiver<Option<Frame>>,
    last_seq: Option<u64>,
    started: bool,
}

impl OpenStream {
    /// The SSE body: the newest frame whenever there is one (at most the frame being written
    /// and the newest one wait for a connection), then a final event when the refresher or a
    /// shutdown ends it.
    pub fn into_body(self) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
        let sessions = self.guard.sessions.clone();
        let mut feed = sessions.feed.clone();
        // The current frame goes out at once; later ones as they come.
        feed.mark_changed();
        let state = BodyState {
            guard: Some(self.guard),
            end: self.end,
            shutdown: Box::pin(sessions.shutdown.clone().cancelled_owned()),
            feed,
            last_seq: None,
            started: false,
        };
        // Messages keep the connection busy when they come often; a heartbeat (and the timer
        // it costs per frame) is only needed when they do not.
        let heartbeat = sessions.config.stream_interval >= HEARTBEAT;
        futures::stream::unfold(state, move |mut state| {
            let sessions = sessions.clone();
            async move {
                state.guard.as_ref()?;
                if !state.started {
                    state.started = true;
                    // Sent at once, so the client has the response head without waiting a tick.
                    return Some((Ok(Bytes::from(kubescaler_sse::opening(RECONNECT_AFTER))), state));
                }
                loop {
                    tokio::select! {
                        biased;
                        end = &mut state.end => {
                            let frame = match end {
                                Ok(End::LockLost(why)) => {
                                    feed::control("lock-lost", &json!({ "reason": why.to_string() }))
                                }
                                Ok(End::Unbound) => feed::control(
                                    "unbound",
                                    &json!({ "reason": "the user is no longer in the profile, or the profile is gone" }),
                                ),
                                Ok(End::Rebalance) => rebalance_frame(),
                                Ok(End::Shutdown) => shutdown_frame(),
                                Err(_) => return None,
                            };
                            state.guard = None;
                            return Some((Ok(frame), state));
                        }
                        () = &mut state.shutdown => {
                            state.guard = None;
                            return Some((Ok(shutdown_frame()), state));
                        }
                        () = tokio::time::sleep(HEARTBEAT), if heartbeat => {
                            return Some((Ok(Bytes::from_static(b": heartbeat\n\n")), state));
                        }
                        changed = state.feed.changed() => {
                            if changed.is_err() {
                                return None;
                            }
                            let Some(frame) = state.feed.borrow_and_update().clone() else { continue };
                            if let Some(last) = state.last_seq {
                                let skipped = frame.seq.saturating_sub(last + 1);
                                if skipped > 0 {
                                    sessions.metrics.dropped.inc_by(skipped);
                                }
                            }
                            state.last_seq = Some(frame.seq);
                            sessions.metrics.sent.inc();
                            sessions.metrics.bytes.inc_by(frame.bytes.len() as u64);
                            return Some((Ok(frame.bytes), state));
                        }
                    }
                }
            }
        })
    }
}

/// `retry:` too, so that EventSource clients come back as soon as the others.
fn rebalance_frame() -> Bytes {
    let mut data = json!({
        "reason": "this instance holds more than its share of the streams; reconnect, another one takes this stream",
    });
    data[RECONNECT_AFTER_MS] = json!(REBALANCE_RETRY.as_millis() as u64);
    Bytes::from(kubescaler_sse::event("rebalance", data, Some(REBALANCE_RETRY)))
}

fn shutdown_frame() -> Bytes {
    feed::control(
        "shutdown",
        &json!({ "reason": "this instance is shutting down; reconnect", RECONNECT_AFTER_MS: RECONNECT_AFTER.as_millis() as u64 }),
    )
}
