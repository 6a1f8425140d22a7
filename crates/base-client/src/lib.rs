//! A typed client for base's REST API.
//!
//! One pooled `reqwest::Client` with connect and request timeouts. Idempotent requests (GET,
//! PUT, DELETE) are retried a bounded number of times with backoff when base cannot be reached
//! or answers 502/503/504; a POST never is, because a retried create could create twice.
//! Failures keep their meaning for main's clients: base's own JSON errors are carried through,
//! an unreachable base is 503, a slow one 504 — never an empty list in place of an answer.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
pub use kubescaler_core::bindings::Binding;
#[cfg(doc)]
use kubescaler_core::bindings::MAX_PAIRS_PER_CHECK;
use kubescaler_core::bindings::{BindingCheck, BindingVerdict, BindingVerdicts, CheckPairs};
use kubescaler_core::codes::{UpstreamError, UpstreamFailure};
use kubescaler_core::model::{Profile, ProfileBody, User, UserBody};
use kubescaler_core::{ErrorCode, duration};
use kubescaler_core::{ProfileId, UserId};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first retry's pause; each next one doubles it (100 ms, 200 ms, …): a restarting pod or
/// a rolling update is back within a few hundred milliseconds, and a real outage is not
/// hammered.
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// How long an idle pooled connection to base is kept: a minute spans the gaps of a quiet
/// instance's traffic, and stays below the idle timeouts of proxies and kube-proxy's conntrack
/// entries, so a kept connection is not one the network has silently dropped.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The one POST that creates nothing (a read with a body), so it is retried like a GET.
const CHECK_PATH: &str = "/bindings/check";

/// At most this much of an answer base sent without its JSON error goes into the message.
const UPSTREAM_TEXT_CHARS: usize = 200;

/// The settings' defaults: one definition for the flags and for [`BaseClientConfig::new`].
pub mod defaults {
    use std::time::Duration;

    /// base on this machine, on its default port.
    pub const URL: &str = "http://127.0.0.1:8081";
    /// A connection within the cluster opens in milliseconds; a second means base is not there.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Generous beside a query's milliseconds: the bound of a base that hangs, not of a slow one.
    pub const TIMEOUT: Duration = Duration::from_secs(10);
    /// Two more attempts ride out a restarting pod without multiplying a real outage's load.
    pub const RETRIES: u32 = 2;
}

#[derive(Debug, Clone, Args)]
pub struct BaseClientConfig {
    /// Where base listens.
    #[arg(id = "base_url", long = "base-url", env = "BASE_URL", value_name = "BASE_URL", default_value = defaults::URL, value_parser = base_url)]
    pub url: String,

    /// Time allowed to open a connection to base.
    #[arg(id = "base_connect_timeout", long = "base-connect-timeout", env = "BASE_CONNECT_TIMEOUT", value_name = "BASE_CONNECT_TIMEOUT", value_parser = duration::parse, default_value = duration::text(defaults::CONNECT_TIMEOUT))]
    pub connect_timeout: Duration,

    /// Time allowed for one request to base, answer included.
    #[arg(id = "base_timeout", long = "base-timeout", env = "BASE_TIMEOUT", value_name = "BASE_TIMEOUT", value_parser = duration::parse, default_value = duration::text(defaults::TIMEOUT))]
    pub timeout: Duration,

    /// Extra attempts of an idempotent request when base is unreachable or answers 502/503/504.
    #[arg(
        id = "base_retries",
        long = "base-retries",
        env = "BASE_RETRIES",
        value_name = "BASE_RETRIES",
        default_value_t = defaults::RETRIES
    )]
    pub retries: u32,
}

impl BaseClientConfig {
    /// The defaults, with base at `url`.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
            connect_timeout: defaults::CONNECT_TIMEOUT,
            timeout: defaults::TIMEOUT,
            retries: defaults::RETRIES,
        }
    }
}

fn base_url(input: &str) -> Result<String, String> {
    match reqwest::Url::parse(input) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(input.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("`{input}` is not an http(s) URL such as http://base:8080")),
    }
}

/// Why a call to base failed. The transport's and the parser's errors stay the sources, so
/// the log says why; they are shared, so that one failure can be reported more than once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BaseError {
    #[error("base is unreachable")]
    Unreachable(#[source] Arc<reqwest::Error>),
    #[error("base did not answer in time")]
    Timeout(#[source] Arc<reqwest::Error>),
    /// base answered with an error of its own (`{"error","message"}`).
    #[error("base answered {status}: {message}")]
    Upstream { status: StatusCode, code: ErrorCode, message: String },
    #[error("base sent an answer to {path} that cannot be read")]
    Unreadable {
        path: String,
        #[source]
        source: Arc<serde_json::Error>,
    },
    #[error("base answered {path} with {got} verdicts for {asked} pairs")]
    WrongCount { path: &'static str, asked: usize, got: usize },
}

impl BaseError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) | Self::Timeout(_) => true,
            Self::Upstream { status, .. } => matches!(status.as_u16(), 502..=504),
            Self::Unreadable { .. } | Self::WrongCount { .. } => false,
        }
    }
}

impl UpstreamError for BaseError {
    fn dependency(&self) -> &'static str {
        "base"
    }

    fn failure(&self) -> UpstreamFailure {
        match self {
            Self::Unreachable(_) => UpstreamFailure::Unreachable,
            Self::Timeout(_) => UpstreamFailure::TimedOut,
            Self::Upstream { status, .. } if *status == StatusCode::SERVICE_UNAVAILABLE => {
                UpstreamFailure::Unreachable
            }
            Self::Upstream { status, .. } if status.is_server_error() => UpstreamFailure::Failed,
            Self::Upstream { status, code, message } => {
                UpstreamFailure::Refused { status: status.as_u16(), code: *code, message: message.clone() }
            }
            Self::Unreadable { .. } | Self::WrongCount { .. } => UpstreamFailure::Failed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BaseClient {
    http: reqwest::Client,
    url: String,
    retries: u32,
}

impl BaseClient {
    pub fn new(config: &BaseClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { http, url: config.url.clone(), retries: config.retries })
    }

    pub async fn list_users(&self) -> Result<Vec<User>, BaseError> {
        self.json(Method::GET, "/users", None::<&()>).await
    }

    pub async fn list_profiles(&self) -> Result<Vec<Profile>, BaseError> {
        self.json(Method::GET, "/profiles", None::<&()>).await
    }

    /// The ids of the profiles holding `user`. Only the ids are decoded: the users of each
    /// profile (up to 10,000 apiece) are skipped, not parsed.
    pub async fn profiles_of_user(&self, user: UserId) -> Result<Vec<ProfileId>, BaseError> {
        #[derive(serde::Deserialize)]
        struct IdOnly {
            id: ProfileId,
        }
        let profiles: Vec<IdOnly> =
            self.json(Method::GET, &format!("/profiles/user/{user}"), None::<&()>).await?;
        Ok(profiles.into_iter().map(|p| p.id).collect())
    }

    /// Whether `user` is in `profile` (base's `GET /bindings/{profileId}/{userId}`: a boolean,
    /// or 404 for no such profile).
    pub async fn binding(&self, profile: ProfileId, user: UserId) -> Result<Binding, BaseError> {
        let path = format!("/bindings/{profile}/{user}");
        match self.json::<BindingVerdict>(Method::GET, &path, None::<&()>).await {
            Ok(BindingVerdict { bound: true }) => Ok(Binding::Bound),
            Ok(BindingVerdict { bound: false }) => Ok(Binding::NotBound),
            Err(BaseError::Upstream { status: StatusCode::NOT_FOUND, .. }) => Ok(Binding::NoProfile),
            Err(e) => Err(e),
        }
    }

    /// For each pair (at most [`MAX_PAIRS_PER_CHECK`]), in order, whether it is bound (base's
    /// `POST /bindings/check`). A read, so retried like one.
    pub async fn bindings(&self, pairs: CheckPairs) -> Result<Vec<bool>, BaseError> {
        let asked = pairs.as_slice().len();
        let verdicts: BindingVerdicts =
            self.json(Method::POST, CHECK_PATH, Some(&BindingCheck { pairs })).await?;
        if verdicts.bound.len() != asked {
            return Err(BaseError::WrongCount { path: CHECK_PATH, asked, got: verdicts.bound.len() });
        }
        Ok(verdicts.bound)
    }

    pub async fn create_user(&self, body: &UserBody) -> Result<User, BaseError> {
        self.json(Method::POST, "/users", Some(body)).await
    }

    pub async fn create_profile(&self, body: &ProfileBody) -> Result<Profile, BaseError> {
        self.json(Method::POST, "/profiles", Some(body)).await
    }

    pub async fn delete_all_users(&self) -> Result<(), BaseError> {
        self.send(Method::DELETE, "/users", None::<&()>).await.map(drop)
    }

    pub async fn delete_all_profiles(&self) -> Result<(), BaseError> {
        self.send(Method::DELETE, "/profiles", None::<&()>).await.map(drop)
    }

    /// Whether base says it is ready (its own `/readyz`), for main's readiness: asked once,
    /// never retried, and bounded by the caller's probe timeout rather than the request's.
    pub async fn ready(&self) -> Result<(), BaseError> {
        let response = self.http.get(format!("{}/readyz", self.url)).send().await.map_err(transport)?;
        check(response).await.map(drop)
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, BaseError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| BaseError::Unreadable { path: path.to_owned(), source: Arc::new(e) })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<bytes::Bytes, BaseError> {
        let idempotent = method != Method::POST || path == CHECK_PATH;
        let mut attempt = 0;
        loop {
            let mut request = self.http.request(method.clone(), format!("{}{path}", self.url));
            if let Some(body) = body {
                request = request.json(body);
            }
            let result = match request.send().await {
                Ok(response) => check(response).await,
                Err(e) => Err(transport(e)),
            };
            match result {
                Err(e) if idempotent && attempt < self.retries && e.is_retryable() => {
                    attempt += 1;
                    let backoff = RETRY_BACKOFF * 2u32.pow(attempt - 1);
                    tracing::debug!(error = %e, %method, path, attempt, ?backoff, "retrying base request");
                    tokio::time::sleep(backoff).await;
                }
                other => return other,
            }
        }
    }
}

fn transport(error: reqwest::Error) -> BaseError {
    if error.is_timeout() {
        BaseError::Timeout(Arc::new(error))
    } else {
        BaseError::Unreachable(Arc::new(error))
    }
}

async fn check(response: reqwest::Response) -> Result<bytes::Bytes, BaseError> {
    let status = response.status();
    let bytes = response.bytes().await.map_err(transport)?;
    if status.is_success() {
        return Ok(bytes);
    }
    #[derive(serde::Deserialize)]
    struct Body {
        error: String,
        message: String,
    }
    Err(match serde_json::from_slice::<Body>(&bytes) {
        // A code this client does not know (a newer base) is still base's failure to answer.
        Ok(body) => BaseError::Upstream {
            status,
            code: body.error.parse().unwrap_or(ErrorCode::UpstreamError),
            message: body.message,
        },
        Err(_) => BaseError::Upstream {
            status,
            code: ErrorCode::UpstreamError,
            message: String::from_utf8_lossy(&bytes).chars().take(UPSTREAM_TEXT_CHARS).collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use clap::{FromArgMatches, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        base: BaseClientConfig,
    }

    #[test]
    fn flags_default_to_what_new_gives() {
        // Without the environment: its settings are not the defaults.
        let command = <Flags as clap::CommandFactory>::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.no_binary_name(true).try_get_matches_from(Vec::<String>::new()).unwrap();
        let flags = Flags::from_arg_matches(&matches).unwrap().base;
        let new = BaseClientConfig::new(defaults::URL);
        assert_eq!(
            (flags.url, flags.connect_timeout, flags.timeout, flags.retries),
            (new.url, new.connect_timeout, new.timeout, new.retries)
        );
    }
}
