//! main's REST API. A main of its own serves it both at the root and under `/main` (the
//! Ingress passes `/main/x` on unchanged; without an Ingress `/x` works too); the all-in-one's
//! front door nests the root form under `/main` itself, so there is one `/main` either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{any, get};
use kubescaler_core::model::{Profile, User};
use kubescaler_core::{ProfileId, UserId, codes};
use kubescaler_server::error::{Api, ApiPath, ApiQuery, method_not_allowed_for, no_route_for};
use kubescaler_server::host_name;
use kubescaler_server::{ApiError, ApiJson};
use subtle::ConstantTimeEq;

use crate::launched::LaunchedReader;
use crate::testdata::{Params, Progress, TestData};
use kubescaler_base_client::BaseClient;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    pub base: BaseClient,
    pub launched: Arc<dyn LaunchedReader>,
    pub testdata: TestData,
    pub admin_token: Option<Arc<str>>,
    /// What `GET /` answers: the pod name under Kubernetes.
    pub hostname: Arc<str>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("base", &self.base)
            .field("launched", &self.launched.backend())
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The API at the root: `/users`, `/login/{userId}`, … and `/`, the instance's name.
pub fn api(state: AppState) -> Router {
    let admin = Router::new()
        .route("/testdata", get(testdata_progress).post(start_testdata).delete(drop_testdata))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin));
    Router::new()
        .route("/", host_name(&state.hostname))
        .route("/users", get(users))
        .route("/profiles", get(profiles))
        .route("/suggested", get(suggested))
        .route("/login/{user_id}", get(login))
        .route("/{user_id}/{profile_id}", any(agent_page))
        .merge(admin)
        .with_state(state)
}

/// The API at the root and again under `/main`, for a main of its own.
pub fn router(state: AppState) -> Router {
    // `/main/` is the root too, as `/main` is; nesting gives only the latter.
    let root = Router::new().route("/main/", host_name(&state.hostname));
    let api = api(state);
    Router::new().merge(api.clone()).nest("/main", api).merge(root)
}

/// With `ADMIN_TOKEN` set, changing test data needs `Authorization: Bearer <token>`.
/// Reading progress stays open: it reveals nothing and the agent page may poll it.
async fn require_admin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &state.admin_token else { return next.run(request).await };
    if request.method() == axum::http::Method::GET {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant time, so the answer's timing does not reveal how much of a guess was right.
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        codes::UNAUTHORIZED,
        "this operation needs `Authorization: Bearer <ADMIN_TOKEN>`",
    )
    .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[tracing::instrument(skip_all)]
async fn users(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<User>>> {
    Ok(ApiJson(state.base.list_users().await?))
}

#[tracing::instrument(skip_all)]
async fn profiles(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<Profile>>> {
    Ok(ApiJson(state.base.list_profiles().await?))
}

/// Users bound to at least two profiles, computed from the data itself so that every replica
/// gives the same answer.
#[tracing::instrument(skip_all)]
async fn suggested(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<UserId>>> {
    let profiles = state.base.list_profiles().await?;
    let mut counts: BTreeMap<UserId, usize> = BTreeMap::new();
    for user in profiles.iter().flat_map(|p| p.users.iter()) {
        *counts.entry(user).or_default() += 1;
    }
    Ok(ApiJson(counts.into_iter().filter(|&(_, n)| n >= 2).map(|(user, _)| user).collect()))
}

/// The user's profiles that are streaming now: base's profiles-of-user, then one round of
/// Redis reads for all of them together.
#[tracing::instrument(skip(state))]
async fn login(
    State(state): State<AppState>,
    Api(Path(user)): ApiPath<UserId>,
) -> ApiResult<ApiJson<Vec<ProfileId>>> {
    let profiles = state.base.profiles_of_user(user).await?;
    let launched = state.launched.launched(user, &profiles).await?;
    Ok(ApiJson(profiles.into_iter().zip(launched).filter_map(|(p, on)| on.then_some(p)).collect()))
}

/// The original's link to the test agent, `/{userId}/{profileId}`. Every other path of two
/// segments lands here too (`/actuator/health`, a typo of a route) and is no route of main's:
/// 404, not a complaint that `actuator` is not a user id.
async fn agent_page(
    method: Method,
    OriginalUri(uri): OriginalUri,
    segments: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let ids = segments.ok().and_then(|Path((user, profile))| {
        Some((UserId::parse(&user).ok()?, ProfileId::parse(&profile).ok()?))
    });
    let Some((user, profile)) = ids else {
        return no_route_for(&method, &uri).into_response();
    };
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed_for(&method, &uri).into_response();
    }
    Redirect::temporary(&format!("/index/{user}/{profile}")).into_response()
}

async fn testdata_progress(State(state): State<AppState>) -> ApiJson<Progress> {
    ApiJson(state.testdata.progress())
}

#[tracing::instrument(skip(state))]
async fn start_testdata(
    State(state): State<AppState>,
    Api(Query(params)): ApiQuery<Params>,
) -> ApiResult<(StatusCode, ApiJson<Progress>)> {
    Ok((StatusCode::ACCEPTED, ApiJson(state.testdata.start(&params)?)))
}

/// Drops all users and profiles. Refused while a generation runs: it would leave half of the
/// new data behind.
#[tracing::instrument(skip_all)]
async fn drop_testdata(State(state): State<AppState>) -> ApiResult<StatusCode> {
    if state.testdata.is_running() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::GENERATION_RUNNING,
            "a test data generation is running; wait until GET /testdata says it ended",
        ));
    }
    state.base.delete_all_profiles().await?;
    state.base.delete_all_users().await?;
    Ok(StatusCode::NO_CONTENT)
}
