//! The test agent page and the usage page, embedded in the binary from `static/` (no CDN,
//! nothing to deploy beside the binary). The routes that serve them are in [`routes`](crate::routes).

use std::sync::LazyLock;

pub(crate) const AGENT_HTML: &str = include_str!("../../../static/agent.html");
pub(crate) const AGENT_JS: &str = include_str!("../../../static/agent.js");
pub(crate) const USAGE_HTML: &str = include_str!("../../../static/index.html");

/// The agent page for `/index/{u}/{p}/`, with the trailing slash bookmarks often keep: one level
/// deeper, so its relative URLs (the script, the stream) resolve from one level up, as they do
/// from `/index/{u}/{p}`. Still relative, so the page works under any path prefix.
static AGENT_HTML_DIR: LazyLock<String> =
    LazyLock::new(|| AGENT_HTML.replacen("<head>", "<head>\n<base href=\"../\">", 1));

/// The agent page as served under `/index/{u}/{p}/`.
pub(crate) fn agent_html_dir() -> &'static str {
    AGENT_HTML_DIR.as_str()
}
