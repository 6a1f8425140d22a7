//! Random test data: a number of profiles, each with new users that
//! have fake human names; the first profile's users are "shared" and also put in every later
//! profile, so those users have several profiles (they are what `/suggested` lists).
//!
//! A generation runs in the background (POST answers 202 at once) with a bounded number of
//! requests to base in flight; `GET /testdata` reports its progress. Every failure is counted:
//! a profile whose users could not all be created is still created with those that were, and
//! is reported as incomplete, and the run ends `failed` rather than `done`.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use fake::Fake;
use fake::faker::name::en::Name;
use futures::StreamExt;
use kubescaler_core::UserId;
use kubescaler_core::model::{ProfileBody, ProfileUsers, UserBody, UserName};
use kubescaler_core::sync::lock;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use kubescaler_base_client::BaseClient;

/// Bounds of both sizes: at least two profiles, so that shared users have several profiles.
pub const MIN_SIZE: u32 = 2;
pub const MAX_SIZE: u32 = 100;

/// Query parameters of `POST /testdata`; a size left out is drawn at random in its bounds.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Params {
    /// How many profiles (2 to 100); random when left out.
    #[param(minimum = 2, maximum = 100)]
    pub profiles: Option<u32>,
    /// How many new users each profile gets (2 to 100); random when left out.
    #[param(minimum = 2, maximum = 100)]
    pub users_per_profile: Option<u32>,
    /// The seed of the random plan: a seed always gives the same names and sizes.
    pub seed: Option<u64>,
}

impl Params {
    /// Refuses sizes out of [`MIN_SIZE`, `MAX_SIZE`], naming the parameter.
    pub fn validate(&self) -> Result<(), StartError> {
        for (name, value) in [("profiles", self.profiles), ("users_per_profile", self.users_per_profile)] {
            if let Some(got) = value
                && !(MIN_SIZE..=MAX_SIZE).contains(&got)
            {
                return Err(StartError::OutOfBounds { name, got });
            }
        }
        Ok(())
    }
}

/// Why a generation was not started.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    #[error("`{name}` must be between {MIN_SIZE} and {MAX_SIZE}, got {got}")]
    OutOfBounds { name: &'static str, got: u32 },
    #[error("a test data generation is already running; see GET /testdata")]
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Idle,
    Running,
    Done,
    Failed,
}

/// What `GET /testdata` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Progress {
    pub state: State,
    pub seed: Option<u64>,
    pub profiles_planned: usize,
    pub users_planned: usize,
    pub shared_users: usize,
    pub profiles_created: usize,
    pub users_created: usize,
    pub profiles_failed: usize,
    /// Profiles created without some of their users (whose creation failed).
    pub profiles_incomplete: usize,
    pub users_failed: usize,
    /// Requests sent to base by this run.
    pub base_requests: usize,
    /// Seconds since the start, or the run's duration once it ended.
    pub elapsed_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl Progress {
    fn idle() -> Self {
        Self {
            state: State::Idle,
            seed: None,
            profiles_planned: 0,
            users_planned: 0,
            shared_users: 0,
            profiles_created: 0,
            users_created: 0,
            profiles_failed: 0,
            profiles_incomplete: 0,
            users_failed: 0,
            base_requests: 0,
            elapsed_seconds: 0.0,
            started_at: None,
            last_error: None,
        }
    }
}

/// The sizes and names of one run, drawn up front from the seed, so that a seed always gives
/// the same data whatever order the concurrent requests finish in.
#[derive(Debug)]
struct Plan {
    seed: u64,
    /// Names of the new users of each profile; profile 0's users are the shared ones.
    profiles: Vec<Vec<UserName>>,
}

impl Plan {
    fn draw(params: &Params) -> Self {
        let seed = params.seed.unwrap_or_else(rand::random);
        let mut rng = StdRng::seed_from_u64(seed);
        let count = params.profiles.unwrap_or_else(|| rng.random_range(MIN_SIZE..=MAX_SIZE));
        let profiles = (0..count)
            .map(|_| {
                let users = params.users_per_profile.unwrap_or_else(|| rng.random_range(MIN_SIZE..=MAX_SIZE));
                (0..users).map(|_| fake_name(&mut rng)).collect()
            })
            .collect();
        Self { seed, profiles }
    }
}

fn fake_name(rng: &mut StdRng) -> UserName {
    let name: String = Name().fake_with_rng(rng);
    // Generated names are short and printable; the fallback only guards the type's rules.
    UserName::parse(name)
        .unwrap_or_else(|_| UserName::parse("Anonymous User").unwrap_or_else(|_| unreachable!()))
}

/// The one generation of this instance (at most one runs at a time).
#[derive(Debug, Clone)]
pub struct TestData {
    base: BaseClient,
    concurrency: usize,
    progress: Arc<Mutex<(Progress, Option<Instant>)>>,
    shutdown: CancellationToken,
}

impl TestData {
    pub fn new(base: BaseClient, concurrency: usize, shutdown: CancellationToken) -> Self {
        Self {
            base,
            concurrency: concurrency.max(1),
            progress: Arc::new(Mutex::new((Progress::idle(), None))),
            shutdown,
        }
    }

    pub fn progress(&self) -> Progress {
        let guard = lock(&self.progress);
        let (mut progress, started) = guard.clone();
        if let (State::Running, Some(started)) = (progress.state, started) {
            progress.elapsed_seconds = started.elapsed().as_secs_f64();
        }
        progress
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut guard = lock(&self.progress);
        f(&mut guard.0);
    }

    pub fn is_running(&self) -> bool {
        self.progress().state == State::Running
    }

    /// Starts a run in the background, unless one is already running.
    pub fn start(&self, params: &Params) -> Result<Progress, StartError> {
        params.validate()?;
        let plan = Plan::draw(params);
        {
            let mut guard = lock(&self.progress);
            if guard.0.state == State::Running {
                return Err(StartError::Running);
            }
            let mut progress = Progress::idle();
            progress.state = State::Running;
            progress.seed = Some(plan.seed);
            progress.profiles_planned = plan.profiles.len();
            progress.users_planned = plan.profiles.iter().map(Vec::len).sum();
            progress.shared_users = plan.profiles.first().map_or(0, Vec::len);
            progress.started_at = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
            *guard = (progress, Some(Instant::now()));
        }
        let this = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let cancelled = tokio::select! {
                () = this.run(plan) => false,
                () = this.shutdown.cancelled() => true,
            };
            this.update(|p| {
                p.elapsed_seconds = started.elapsed().as_secs_f64();
                if cancelled {
                    p.last_error = Some("interrupted by shutdown".into());
                }
                let failures = p.users_failed + p.profiles_failed;
                p.state = if failures == 0 && !cancelled { State::Done } else { State::Failed };
                tracing::info!(state = ?p.state, profiles = p.profiles_created, users = p.users_created,
                    failures, seconds = p.elapsed_seconds, "test data generation ended");
            });
        });
        Ok(self.progress())
    }

    async fn run(&self, plan: Plan) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let mut profiles = plan.profiles.into_iter();
        let Some(shared_names) = profiles.next() else { return };
        let (shared, shared_complete) = self.create_users(shared_names, &permits).await;
        self.create_profile(shared.clone(), shared_complete, &permits).await;
        // Profiles (and within them users) proceed concurrently; the semaphore bounds the
        // requests to base in flight overall, whatever the nesting.
        futures::stream::iter(profiles)
            .for_each_concurrent(self.concurrency, |names| {
                let (shared, permits) = (shared.clone(), permits.clone());
                async move {
                    let (mut users, complete) = self.create_users(names, &permits).await;
                    users.extend(shared);
                    self.create_profile(users, complete && shared_complete, &permits).await;
                }
            })
            .await;
    }

    /// Creates the users, returning the ids of those that were; failures are counted.
    async fn create_users(&self, names: Vec<UserName>, permits: &Semaphore) -> (Vec<UserId>, bool) {
        let planned = names.len();
        let created: Vec<UserId> = futures::stream::iter(names)
            .map(|name| async move {
                let _permit = permits.acquire().await.ok()?;
                let result = self.base.create_user(&UserBody::new(name)).await;
                self.update(|p| {
                    p.base_requests += 1;
                    match &result {
                        Ok(_) => p.users_created += 1,
                        Err(e) => {
                            p.users_failed += 1;
                            p.last_error = Some(e.to_string());
                        }
                    }
                });
                result.ok().map(|user| user.id)
            })
            .buffer_unordered(self.concurrency)
            .filter_map(std::future::ready)
            .collect()
            .await;
        let complete = created.len() == planned;
        (created, complete)
    }

    async fn create_profile(&self, users: Vec<UserId>, complete: bool, permits: &Semaphore) {
        let Ok(users) = ProfileUsers::new(users) else {
            // Unreachable within the size bounds (100 + 100 users); counted, not hidden.
            self.update(|p| p.profiles_failed += 1);
            return;
        };
        let Ok(_permit) = permits.acquire().await else { return };
        let result = self.base.create_profile(&ProfileBody::new(users)).await;
        self.update(|p| {
            p.base_requests += 1;
            match &result {
                Ok(_) => {
                    p.profiles_created += 1;
                    if !complete {
                        p.profiles_incomplete += 1;
                    }
                }
                Err(e) => {
                    p.profiles_failed += 1;
                    p.last_error = Some(e.to_string());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_plan() {
        let params = Params { profiles: None, users_per_profile: None, seed: Some(7) };
        let (a, b) = (Plan::draw(&params), Plan::draw(&params));
        assert_eq!(a.profiles, b.profiles);
        assert!((2..=100).contains(&a.profiles.len()));
        assert!(a.profiles.iter().all(|users| (2..=100).contains(&users.len())));
    }

    #[test]
    fn fixed_sizes_are_kept() {
        let plan = Plan::draw(&Params { profiles: Some(3), users_per_profile: Some(4), seed: None });
        assert_eq!(plan.profiles.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 4]);
    }

    #[test]
    fn sizes_out_of_bounds_name_the_limit() {
        for params in [
            Params { profiles: Some(1), ..Params::default() },
            Params { users_per_profile: Some(101), ..Params::default() },
        ] {
            let error = params.validate().unwrap_err();
            assert!(matches!(error, StartError::OutOfBounds { .. }), "{error:?}");
            assert!(error.to_string().contains("between 2 and 100"), "{error}");
        }
    }
}
