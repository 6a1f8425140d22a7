//! The test agent page and the usage page, embedded in the binary from `static/` (no CDN,
//! nothing to deploy beside the binary).

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use kubescaler_core::{ProfileId, UserId};
use kubescaler_server::error::ApiPath;

const AGENT_HTML: &str = include_str!("../../../static/agent.html");
const AGENT_JS: &str = include_str!("../../../static/agent.js");
const USAGE_HTML: &str = include_str!("../../../static/index.html");

/// The agent page for `/index/{u}/{p}/`, the form the original's usage text gave: one level
/// deeper, so its relative URLs (the script, the stream) resolve from one level up, as they do
/// from `/index/{u}/{p}`. Still relative, so the page works under any path prefix.
static AGENT_HTML_DIR: LazyLock<String> =
    LazyLock::new(|| AGENT_HTML.replacen("<head>", "<head>\n<base href=\"../\">", 1));

pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Html(USAGE_HTML) }))
        .route("/index/{user_id}/{profile_id}", get(agent))
        .route("/index/{user_id}/{profile_id}/", get(agent_dir))
        .route(
            "/static/agent.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], AGENT_JS) }),
        )
}

/// The page reads the pair from its own URL; the ids are checked here so a typo gets a clear
/// 400 rather than a page that fails later.
async fn agent(ApiPath((_user, _profile)): ApiPath<(UserId, ProfileId)>) -> impl IntoResponse {
    Html(AGENT_HTML)
}

async fn agent_dir(ApiPath((_user, _profile)): ApiPath<(UserId, ProfileId)>) -> impl IntoResponse {
    Html(AGENT_HTML_DIR.as_str())
}
