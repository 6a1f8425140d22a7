//! main's REST API. A main of its own serves it both at the root and under `/main` (the
//! Ingress passes `/main/x` on unchanged; without an Ingress `/x` works too); the all-in-one's
//! front door mounts the root form under `/main` with the same [`under_prefix`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::any;
use kubescaler_core::model::{Profile, User};
use kubescaler_core::{ErrorCode, ProfileId, UserId};
use kubescaler_server::error::{Api, ApiPath, ApiQuery, method_not_allowed_response, no_route_for};
use kubescaler_server::openapi::{self, ErrorBody, Failure, documented_host_name};
use kubescaler_server::{ApiError, ApiJson};
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::launched::{LaunchedReader, RegistryError};
use crate::testdata::{Params, Progress, StartError, TestData};
use kubescaler_base_client::{BaseClient, BaseError};

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

/// The API, each route registered with its description (`#[utoipa::path]` beside each
/// handler), so the router and [`openapi`] cannot disagree.
fn routes(hostname: &str, admin_token: Option<Arc<str>>) -> OpenApiRouter<AppState> {
    let admin = middleware::from_fn(move |request: Request, next: Next| {
        require_admin(admin_token.clone(), request, next)
    });
    OpenApiRouter::new()
        .routes(documented_host_name(hostname))
        .routes(routes!(users))
        .routes(routes!(profiles))
        .routes(routes!(suggested))
        .routes(routes!(login))
        .routes(agent_page_route())
        .routes(routes!(api_page))
        .routes(
            routes!(testdata_progress, start_testdata, drop_testdata)
                .map(|methods| methods.route_layer(admin)),
        )
}

/// The API at the root: `/users`, `/login/{userId}`, … and `/`, the instance's name; its
/// description at `/openapi.json` and the browsable page at `/docs`.
pub fn api(state: AppState) -> Router {
    let routes = routes(&state.hostname, state.admin_token.clone());
    let (api, _) = openapi::split(routes.with_state(state), describe);
    api.merge(api_page_files())
}

/// main's OpenAPI document: the API and the operational endpoints.
pub fn openapi() -> utoipa::openapi::OpenApi {
    describe(routes("", None).into_openapi())
}

fn describe(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = openapi::document(
        api,
        "kubescaler main",
        env!("CARGO_PKG_VERSION"),
        "Listings, test data and the launched profiles of a user: the public REST side of \
         kubescaler, reached under `/main` through the Ingress or the all-in-one's front door. \
         Every failure is an `ErrorBody` with a stable `error` code. The stream service's \
         contract (Server-Sent Events) is described in docs/STREAM.md.",
    );
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        ADMIN_AUTH,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("`ADMIN_TOKEN`; required only when the service sets one"))
                .build(),
        ),
    );
    openapi::with_servers(
        doc,
        &[
            ("/main", "Through the Ingress, the all-in-one's front door, or main itself"),
            ("/", "main itself, which also serves its API at the root"),
        ],
    )
}

/// The browsable API page, on swagger-ui's files embedded in the binary. The page and its
/// files are addressed relatively, so it works wherever main is mounted (`/docs`, `/main/docs`
/// through the front door or the Ingress) and loads nothing from elsewhere.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    summary = "This API, browsable (swagger-ui)",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)),
)]
async fn api_page() -> Html<&'static str> {
    Html(DOCS_PAGE)
}

/// swagger-ui's files, under [`DOCS_ASSETS`]: files of the page, not operations of the API.
fn api_page_files() -> Router {
    swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: DOCS_ASSETS,
        api_definition: swagger_ui_dist::OpenApiSource::Uri("openapi.json"),
        title: Some("kubescaler main"),
    })
}

/// Where swagger-ui's files are served (the crate's own index page there is not linked).
const DOCS_ASSETS: &str = "/docs/assets";

const DOCS_PAGE: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>kubescaler main — API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true });
  </script>
</body>
</html>
"##;

/// Where main's API answers besides the root: what the Ingress passes on unchanged, and where
/// the all-in-one's front door mounts main.
pub const PREFIX: &str = "/main";

/// `main` under [`PREFIX`]: `/main/x` for each `/x`, and main's root at both `/main` and
/// `/main/`. The one mounting of main under its prefix, for a main of its own ([`router`]) and
/// for the all-in-one's front door.
pub fn under_prefix(main: Router) -> Router {
    kubescaler_server::router::nest_with_root(PREFIX, main)
}

/// The API at the root and again under [`PREFIX`], for a main of its own.
pub fn router(state: AppState) -> Router {
    let api = api(state);
    api.clone().merge(under_prefix(api))
}

/// `/{user_id}/{profile_id}` catches every two-segment path and every method, so that what is
/// not two ids answers as no route (404) and another method on two ids as 405, rather than
/// axum's verdict on the parameters.
fn agent_page_route() -> UtoipaMethodRouter<AppState> {
    let (schemas, paths, _): UtoipaMethodRouter<AppState> = routes!(agent_page);
    (schemas, paths, any(agent_page))
}

/// What every operation that calls base may answer besides its own result. base's failures
/// (and the registry's, for `/login`) become an [`ApiError`] only through this enum, so the
/// answers the mapping gives are the ones the operations describe.
#[derive(Debug, utoipa::IntoResponses)]
enum BaseErrors {
    /// base failed, or sent an answer that cannot be read: `bad_gateway`
    #[response(status = 502)]
    BadGateway(Failure),
    /// base does not answer (`unavailable`, `dependency`: `base`); for `/login`, also a quorum of
    /// the Redis instances (`dependency`: `redis`)
    #[response(status = 503)]
    Unavailable(Failure),
    /// base did not answer in time: `gateway_timeout`
    #[response(status = 504)]
    Timeout(Failure),
}

/// base's failure as the gateway main then is. A refusal of base's own that is not a server
/// error is passed on as it came; main's calls are ones base answers with none.
impl From<BaseError> for BaseErrors {
    fn from(error: BaseError) -> Self {
        let answer = ApiError::upstream(error);
        match answer.status() {
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable(Failure(answer)),
            StatusCode::GATEWAY_TIMEOUT => Self::Timeout(Failure(answer)),
            _ => Self::BadGateway(Failure(answer)),
        }
    }
}

/// The registry not answering is Redis unavailable, named as the dependency.
impl From<RegistryError> for BaseErrors {
    fn from(error: RegistryError) -> Self {
        Self::Unavailable(Failure(
            ApiError::unavailable(error.backend(), error.to_string()).caused_by(Arc::new(error)),
        ))
    }
}

impl From<BaseErrors> for ApiError {
    fn from(errors: BaseErrors) -> Self {
        match errors {
            BaseErrors::BadGateway(answer)
            | BaseErrors::Unavailable(answer)
            | BaseErrors::Timeout(answer) => answer.into(),
        }
    }
}

/// A size out of bounds is the client's mistake, naming the parameter; a second generation
/// while one runs is a conflict of its own code, which the agent page tells apart.
impl From<StartError> for ApiError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::OutOfBounds { .. } => {
                ApiError::bad_request(ErrorCode::InvalidParameter, error.to_string())
            }
            StartError::Running => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::GenerationRunning, error.to_string())
            }
        }
    }
}

/// The security scheme of the test-data changes (the name the operations' `security` use).
const ADMIN_AUTH: &str = "admin_token";

/// With `ADMIN_TOKEN` set, changing test data needs `Authorization: Bearer <token>`.
/// Reading progress stays open: it reveals nothing and the agent page may poll it.
async fn require_admin(admin_token: Option<Arc<str>>, request: Request, next: Next) -> Response {
    let Some(expected) = admin_token else { return next.run(request).await };
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
        ErrorCode::Unauthorized,
        "this operation needs `Authorization: Bearer <ADMIN_TOKEN>`",
    )
    .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[utoipa::path(
    get,
    path = "/users",
    tag = "data",
    summary = "Every user (from base)",
    responses(
        (status = 200, description = "Every user, in id order", body = Vec<User>),
        BaseErrors,
    ),
)]
#[tracing::instrument(skip_all)]
async fn users(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<User>>> {
    Ok(ApiJson(state.base.list_users().await.map_err(BaseErrors::from)?))
}

#[utoipa::path(
    get,
    path = "/profiles",
    tag = "data",
    summary = "Every profile (from base)",
    responses(
        (status = 200, description = "Every profile, in id order", body = Vec<Profile>),
        BaseErrors,
    ),
)]
#[tracing::instrument(skip_all)]
async fn profiles(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<Profile>>> {
    Ok(ApiJson(state.base.list_profiles().await.map_err(BaseErrors::from)?))
}

#[utoipa::path(
    get,
    path = "/suggested",
    tag = "data",
    summary = "Users bound to at least two profiles, computed from the data",
    responses(
        (status = 200, description = "The users, in id order", body = Vec<UserId>),
        BaseErrors,
    ),
)]
/// Users bound to at least two profiles, computed from the data itself so that every replica
/// gives the same answer.
#[tracing::instrument(skip_all)]
async fn suggested(State(state): State<AppState>) -> ApiResult<ApiJson<Vec<UserId>>> {
    let profiles = state.base.list_profiles().await.map_err(BaseErrors::from)?;
    let mut counts: BTreeMap<UserId, usize> = BTreeMap::new();
    for user in profiles.iter().flat_map(|p| p.users.iter()) {
        *counts.entry(user).or_default() += 1;
    }
    Ok(ApiJson(counts.into_iter().filter(|&(_, n)| n >= 2).map(|(user, _)| user).collect()))
}

#[utoipa::path(
    get,
    path = "/login/{user_id}",
    tag = "data",
    summary = "The user's profiles that are streaming now",
    params(("user_id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The ids of the user's launched profiles (none for an unknown user)", body = Vec<ProfileId>),
        (status = 400, description = "The id is not a UUID: `invalid_id`", body = ErrorBody),
        BaseErrors,
    ),
)]
/// The user's profiles that are streaming now: base's profiles-of-user, then one round of
/// Redis reads for all of them together.
#[tracing::instrument(skip(state))]
async fn login(
    State(state): State<AppState>,
    Api(Path(user)): ApiPath<UserId>,
) -> ApiResult<ApiJson<Vec<ProfileId>>> {
    let profiles = state.base.profiles_of_user(user).await.map_err(BaseErrors::from)?;
    let launched = state.launched.launched(user, &profiles).await.map_err(BaseErrors::from)?;
    Ok(ApiJson(profiles.into_iter().zip(launched).filter_map(|(p, on)| on.then_some(p)).collect()))
}

#[utoipa::path(
    get,
    path = "/{user_id}/{profile_id}",
    tag = "data",
    summary = "A short link to the test agent page of a user and profile",
    params(
        ("user_id" = UserId, Path, description = "The user's id"),
        ("profile_id" = ProfileId, Path, description = "The profile's id"),
    ),
    responses(
        (status = 307, description = "To the agent page, `/index/{user_id}/{profile_id}`", headers(("location" = String))),
        (status = 404, description = "A two-segment path that is not two ids is no route of main's: `no_route`", body = ErrorBody),
    ),
)]
/// A short link to the test agent, `/{userId}/{profileId}`, as links already handed out read.
/// Every other path of two
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
        return method_not_allowed_response(&method, &uri, "GET,HEAD");
    }
    Redirect::temporary(&format!("/index/{user}/{profile}")).into_response()
}

#[utoipa::path(
    get,
    path = "/testdata",
    tag = "testdata",
    summary = "The progress of the last test-data generation",
    responses(
        (status = 200, description = "The progress (`idle` before any run)", body = Progress),
    ),
)]
async fn testdata_progress(State(state): State<AppState>) -> ApiJson<Progress> {
    ApiJson(state.testdata.progress())
}

#[utoipa::path(
    post,
    path = "/testdata",
    tag = "testdata",
    summary = "Starts generating random users and profiles in the background",
    params(Params),
    security((), ("admin_token" = [])),
    responses(
        (status = 202, description = "Started; poll `GET /testdata`", body = Progress),
        (status = 400, description = "A parameter is out of its bounds, does not parse or is unknown: `invalid_parameter`", body = ErrorBody),
        (status = 401, description = "`ADMIN_TOKEN` is set and the request does not carry it: `unauthorized` (with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 409, description = "A generation is already running: `generation_running`", body = ErrorBody),
    ),
)]
#[tracing::instrument(skip(state))]
async fn start_testdata(
    State(state): State<AppState>,
    Api(Query(params)): ApiQuery<Params>,
) -> ApiResult<(StatusCode, ApiJson<Progress>)> {
    Ok((StatusCode::ACCEPTED, ApiJson(state.testdata.start(&params)?)))
}

#[utoipa::path(
    delete,
    path = "/testdata",
    tag = "testdata",
    summary = "Deletes every user and profile",
    security((), ("admin_token" = [])),
    responses(
        (status = 204, description = "Everything is deleted"),
        (status = 401, description = "`ADMIN_TOKEN` is set and the request does not carry it: `unauthorized` (with `WWW-Authenticate: Bearer`)", body = ErrorBody),
        (status = 409, description = "A generation is running: `generation_running`", body = ErrorBody),
        BaseErrors,
    ),
)]
/// Drops all users and profiles. Refused while a generation runs: it would leave half of the
/// new data behind.
#[tracing::instrument(skip_all)]
async fn drop_testdata(State(state): State<AppState>) -> ApiResult<StatusCode> {
    if state.testdata.is_running() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::GenerationRunning,
            "a test data generation is running; wait until GET /testdata says it ended",
        ));
    }
    state.base.delete_all_profiles().await.map_err(BaseErrors::from)?;
    state.base.delete_all_users().await.map_err(BaseErrors::from)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    /// Every failure an operation describes has the one error body, so a client reads every
    /// error the same way (and schemathesis checks each against it).
    #[test]
    fn every_error_answer_is_described_as_the_error_body() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let (count, off) = kubescaler_testkit::error_answers_off_the_error_body(&doc);
        assert!(off.is_empty(), "{off:?}");
        assert!(count > 20, "{count}");
    }
}
