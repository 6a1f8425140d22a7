//! Where an instance hears of binding changes: base announces each write that may unbind a pair
//! ([`BindingChange`]) on the Redis channel `kubescaler:bindings` of every instance of
//! `REDIS_URLS`, or, in the all-in-one process, on an in-process channel.
//!
//! What arrives is a [`Notice`]: a change, or word that changes may have been missed — a
//! subscription (re)made after a time without one, an in-process receiver that fell behind.
//! The sessions then re-check every pair they hold, so a message lost with a connection costs
//! one batched re-check, not a stream that outlives its binding.
//!
//! Each Redis subscription is a connection of its own, pinged every [`PING_EVERY`]: a connection
//! that died without a word (a half-open TCP connection) is noticed within seconds and made
//! again, and the re-check that follows covers what it missed.

use std::time::Duration;

use futures::StreamExt;
use kubescaler_core::bindings::BindingChange;
use kubescaler_core::keys;
use kubescaler_redis::RedisArgs;
use prometheus::IntGauge;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// How often a live subscription is pinged.
const PING_EVERY: Duration = Duration::from_secs(5);
/// The pause after a failed subscription, doubled after each next failure up to the maximum:
/// a restarting Redis is back within a second, and one that is down is asked every few seconds.
const RETRY: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// What the sessions are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A write that may have unbound the pairs it touches.
    Changed(BindingChange),
    /// Changes may have been missed: every held pair is to be checked again.
    Missed,
}

/// Where changes come from; the sessions start it with the instance.
#[derive(Debug)]
pub enum BindingSource {
    /// The channel on every instance of `REDIS_URLS` (the cluster).
    Redis(RedisArgs),
    /// base in the same process (the all-in-one).
    InProcess(broadcast::Receiver<BindingChange>),
}

impl BindingSource {
    /// Starts listening; notices arrive on the receiver until `shutdown`. `subscriptions`
    /// counts the live subscriptions: one per Redis instance heard, or the in-process channel.
    pub(crate) fn start(
        self,
        subscriptions: IntGauge,
        shutdown: CancellationToken,
    ) -> Result<mpsc::UnboundedReceiver<Notice>, redis::RedisError> {
        let (notices, received) = mpsc::unbounded_channel();
        match self {
            Self::Redis(config) => {
                for url in &config.urls {
                    let client = redis::Client::open(url.as_str())?;
                    let subscription = Subscription {
                        client,
                        url: kubescaler_redis::redact(url),
                        timeout: config.timeout,
                        notices: notices.clone(),
                        live: subscriptions.clone(),
                    };
                    tokio::spawn(subscription.run(shutdown.clone()));
                }
            }
            Self::InProcess(changes) => {
                // A channel in the process cannot be lost: one subscription, for good.
                subscriptions.set(1);
                tokio::spawn(forward(changes, notices, shutdown));
            }
        }
        Ok(received)
    }
}

/// One Redis instance's subscription, made again whenever it is lost.
struct Subscription {
    client: redis::Client,
    /// Without its password, for logs.
    url: String,
    timeout: Duration,
    notices: mpsc::UnboundedSender<Notice>,
    live: IntGauge,
}

impl Subscription {
    async fn run(self, shutdown: CancellationToken) {
        let mut retry = RETRY;
        let mut told = false;
        loop {
            let subscribed = tokio::select! {
                () = shutdown.cancelled() => return,
                subscribed = tokio::time::timeout(self.timeout, self.subscribe()) => subscribed,
            };
            match subscribed {
                Ok(Ok(pubsub)) => {
                    retry = RETRY;
                    told = false;
                    tracing::info!(redis = %self.url, "listening for binding changes");
                    // Whatever was announced before this moment is unknown here.
                    if self.notices.send(Notice::Missed).is_err() {
                        return;
                    }
                    self.live.inc();
                    let why = self.listen(pubsub, &shutdown).await;
                    self.live.dec();
                    match why {
                        None => return,
                        Some(why) => {
                            tracing::warn!(redis = %self.url, %why, "binding changes subscription lost; subscribing again")
                        }
                    }
                }
                // Said once per outage, not at every retry.
                Ok(Err(e)) if !told => {
                    told = true;
                    tracing::warn!(redis = %self.url, error = %e, "cannot subscribe to binding changes yet; the sweep covers them meanwhile");
                }
                Err(_) if !told => {
                    told = true;
                    tracing::warn!(redis = %self.url, timeout = ?self.timeout, "cannot subscribe to binding changes yet: no answer");
                }
                _ => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(retry) => {}
            }
            retry = (retry * 2).min(RETRY_MAX);
        }
    }

    async fn subscribe(&self) -> redis::RedisResult<redis::aio::PubSub> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(keys::BINDINGS).await?;
        Ok(pubsub)
    }

    /// Forwards changes until the connection is lost (why) or the instance stops (`None`).
    async fn listen(&self, pubsub: redis::aio::PubSub, shutdown: &CancellationToken) -> Option<String> {
        let (mut sink, mut messages) = pubsub.split();
        let mut pings = tokio::time::interval(PING_EVERY);
        pings.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return None,
                message = messages.next() => {
                    let Some(message) = message else { return Some("the connection closed".into()) };
                    let text: String = match message.get_payload() {
                        Ok(text) => text,
                        Err(e) => {
                            tracing::warn!(redis = %self.url, error = %e, "unreadable binding change ignored");
                            continue;
                        }
                    };
                    match text.parse::<BindingChange>() {
                        Ok(change) => {
                            if self.notices.send(Notice::Changed(change)).is_err() {
                                return None;
                            }
                        }
                        Err(e) => tracing::warn!(redis = %self.url, error = %e, "binding change ignored"),
                    }
                }
                _ = pings.tick() => {
                    match tokio::time::timeout(self.timeout, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Some(format!("ping failed: {e}")),
                        Err(_) => return Some(format!("no answer to a ping within {:?}", self.timeout)),
                    }
                }
            }
        }
    }
}

/// The all-in-one's changes, as notices; a receiver that fell behind has missed some.
async fn forward(
    mut changes: broadcast::Receiver<BindingChange>,
    notices: mpsc::UnboundedSender<Notice>,
    shutdown: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.recv() => match change {
                Ok(change) => Notice::Changed(change),
                Err(broadcast::error::RecvError::Lagged(_)) => Notice::Missed,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if notices.send(notice).is_err() {
            return;
        }
    }
}
