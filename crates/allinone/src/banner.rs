//! What the suite prints once it serves: where to go first.

use std::sync::Arc;
use std::time::Duration;

use kubescaler_base::store::Store;

use crate::demo;

/// How often the banner's wait asks whether the front door answers, and how many times: the
/// port is bound before serving starts, so it answers within milliseconds; five seconds at most.
const SERVING_POLL: Duration = Duration::from_millis(50);
const SERVING_POLLS: u32 = 100;

/// The banner: the suite's main URLs and, with the demo's store, a link to the test agent for
/// a user of the demo data (created first on an empty store).
pub(crate) async fn banner(url: &str, demo: Option<Arc<dyn Store>>) -> String {
    let mut text = format!(
        "\nkubescaler is running at {url}\n  usage page      {url}/\n  users           {url}/main/users\n  \
         test data       curl -X POST '{url}/main/testdata?profiles=5&users_per_profile=3'\n  \
         suggested users {url}/main/suggested\n"
    );
    // A proxy from the environment has no business between the suite and itself.
    let http = reqwest::Client::builder().no_proxy().build().unwrap_or_default();
    wait_serving(&http, url).await;
    let link = match demo {
        Some(store) => match demo::prepare(&http, url, &*store).await {
            Some(prepared) => {
                text.push_str(if prepared.created {
                    "\ndemo data created: 5 profiles of 3 users\n"
                } else {
                    "\ndata already present; the demo data was not created again\n"
                });
                prepared.agent
            }
            None => None,
        },
        None => None,
    };
    match link {
        Some(link) => text.push_str(&format!("  open the test agent: {link}\n")),
        None => text.push_str(&format!("  test agent      {url}/index/<userId>/<profileId>\n")),
    }
    text
}

/// Returns once the front door answers: its listener is bound before serving starts.
async fn wait_serving(http: &reqwest::Client, url: &str) {
    for _ in 0..SERVING_POLLS {
        if http.get(format!("{url}/livez")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(SERVING_POLL).await;
    }
}
