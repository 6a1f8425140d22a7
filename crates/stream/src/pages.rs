//! The test agent page and the usage page, embedded in the binary from `static/` (no CDN,
//! nothing to deploy beside the binary).

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use kubescaler_shared::error::ApiPath;
use kubescaler_shared::{ProfileId, UserId};

const AGENT_HTML: &str = include_str!("../../../static/agent.html");
const AGENT_JS: &str = include_str!("../../../static/agent.js");
const USAGE_HTML: &str = include_str!("../../../static/index.html");

pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Html(USAGE_HTML) }))
        .route("/index/{user_id}/{profile_id}", get(agent))
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
