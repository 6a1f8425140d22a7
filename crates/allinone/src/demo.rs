//! `--demo`: test data on a first start, and a user to open the test agent with.

use std::time::Duration;

use kubescaler_base::store::Store;

/// How long the demo waits for a real Cassandra to connect (it takes seconds), asking this often.
const STORE_WAIT: Duration = Duration::from_secs(60);
const STORE_POLL: Duration = Duration::from_millis(100);
/// How often the demo asks whether its test data are made (a few hundred requests to base).
const DEMO_POLL: Duration = Duration::from_millis(100);

/// What the demo did, for the banner to say.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The test data were created now, rather than found.
    pub(crate) created: bool,
    /// The test agent of a user of the data, if one could be found.
    pub(crate) agent: Option<String>,
}

/// Creates the test data on an empty store and finds a user to show the test agent with;
/// `None` when the data could not be made. Failures are logged, not returned: the suite
/// serves all the same, and the banner shows the agent's URL pattern instead.
pub(crate) async fn prepare(http: &reqwest::Client, url: &str, store: &dyn Store) -> Option<Prepared> {
    // A real Cassandra takes a moment to connect to; the demo data would fail before.
    wait_store(store, STORE_WAIT).await;
    match demo_data(http, url).await {
        Ok(created) => {
            let agent = agent_link(http, url).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no user to show the test agent with");
                None
            });
            Some(Prepared { created, agent })
        }
        Err(e) => {
            tracing::warn!(error = %e, "demo data not created");
            None
        }
    }
}

/// Returns once the store answers, or after `within`. Asked directly rather than through
/// `/readyz`, whose every refusal meanwhile would be logged as a failed request.
async fn wait_store(store: &dyn Store, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while store.ping().await.is_err() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(STORE_POLL).await;
    }
}

/// On an empty store, test data; `true` when it was created.
async fn demo_data(http: &reqwest::Client, url: &str) -> anyhow::Result<bool> {
    let users: Vec<serde_json::Value> =
        http.get(format!("{url}/main/users")).send().await?.error_for_status()?.json().await?;
    if !users.is_empty() {
        return Ok(false);
    }
    http.post(format!("{url}/main/testdata?profiles=5&users_per_profile=3"))
        .send()
        .await?
        .error_for_status()?;
    loop {
        let progress: serde_json::Value =
            http.get(format!("{url}/main/testdata")).send().await?.json().await?;
        match progress["state"].as_str() {
            Some("running") => tokio::time::sleep(DEMO_POLL).await,
            Some("done") => return Ok(true),
            _ => anyhow::bail!("test data generation ended {progress}"),
        }
    }
}

/// The test agent of a user in several profiles if there is one, else of any bound user.
async fn agent_link(http: &reqwest::Client, url: &str) -> anyhow::Result<Option<String>> {
    let suggested: Vec<String> =
        http.get(format!("{url}/main/suggested")).send().await?.error_for_status()?.json().await?;
    let profiles: Vec<serde_json::Value> =
        http.get(format!("{url}/main/profiles")).send().await?.error_for_status()?.json().await?;
    let users_of = |p: &serde_json::Value| -> Vec<String> {
        p["users"].as_array().map_or_else(Vec::new, |users| {
            users.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect()
        })
    };
    let pair = suggested
        .iter()
        .find_map(|user| {
            let profile = profiles.iter().find(|p| users_of(p).contains(user))?;
            Some((user.clone(), profile["id"].as_str()?.to_owned()))
        })
        .or_else(|| {
            profiles
                .iter()
                .find_map(|p| Some((users_of(p).into_iter().next()?, p["id"].as_str()?.to_owned())))
        });
    Ok(pair.map(|(user, profile)| format!("{url}/index/{user}/{profile}")))
}
