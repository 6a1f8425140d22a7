//! base's REST API. Handlers validate through the extractors and domain types, call the
//! store, and return either JSON or an [`ApiError`]; nothing here knows which backend runs.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use futures::{StreamExt, TryStreamExt};
use kubescaler_core::bindings::{
    Binding, BindingChange, BindingCheck, BindingVerdict, BindingVerdicts, Pair,
};
use kubescaler_core::model::{Profile, ProfileBody, User, UserBody};
use kubescaler_core::openapi::{NewProfile, NewUser};
use kubescaler_core::{ErrorCode, ProfileId, UserId};
use kubescaler_server::error::{Api, ApiPath};
use kubescaler_server::openapi::{self, BodyErrors, ErrorBody, Failure, documented_host_name};
use kubescaler_server::{ApiError, ApiJson};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::changes::Announce;
use crate::store::{Removed, Store, StoreError, StoreResult};

type ApiResult<T> = Result<T, ApiError>;

/// The handlers' state: the store, and where the writes that may unbind a pair are announced.
#[derive(Debug, Clone)]
struct Db {
    store: Arc<dyn Store>,
    changes: Arc<dyn Announce>,
}

impl std::ops::Deref for Db {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl Db {
    /// Announces `change` after `write`, whatever its outcome: a write that failed half-way (a
    /// user taken out of some of its profiles) may have unbound pairs too, and a re-check of a
    /// pair that is still bound costs one read.
    async fn announcing<T>(
        &self,
        change: BindingChange,
        write: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let outcome = write.await;
        self.changes.announce(change);
        outcome
    }
}

/// Most users announced one by one as having left a profile in one replace; a replace that
/// takes out more announces the profile, and stream re-checks every pair of it it holds.
const MOST_LEFT_ANNOUNCED: usize = 64;

/// What a replace of `id`'s users announces: each user that left (one re-check each), else —
/// who left unknown, too many, or a write that failed half-way — the whole profile. Only adds,
/// or no such profile, announce nothing: no pair can have been unbound.
fn replace_changes(id: ProfileId, replaced: &StoreResult<Option<Removed>>) -> Vec<BindingChange> {
    match replaced {
        Ok(None) => Vec::new(),
        Ok(Some(Removed::Users(left))) if left.len() <= MOST_LEFT_ANNOUNCED => {
            left.iter().map(|&user| BindingChange::Left(Pair { user, profile: id })).collect()
        }
        Ok(Some(_)) | Err(_) => vec![BindingChange::Profile(id)],
    }
}

/// Pair checks in flight at once for one `POST /bindings/check`: each is a single-cell read,
/// so a thousand pairs take a few round trips, without a thousand requests at once on a node.
const CHECKS_IN_FLIGHT: usize = 64;

/// The API, each route registered with its description (`#[utoipa::path]` beside each
/// handler), so the router and [`openapi`] cannot disagree. Writes that may take a user out of
/// a profile are announced to `changes`.
pub fn router(store: Arc<dyn Store>, changes: Arc<dyn Announce>, hostname: &str) -> OpenApiRouter {
    routes(hostname).with_state(Db { store, changes })
}

fn routes(hostname: &str) -> OpenApiRouter<Db> {
    OpenApiRouter::new()
        .routes(documented_host_name(hostname))
        .routes(routes!(list_users, create_user, delete_all_users))
        .routes(routes!(get_user, replace_user, delete_user))
        .routes(routes!(list_profiles, create_profile, delete_all_profiles))
        .routes(routes!(get_profile, replace_profile, delete_profile))
        .routes(routes!(profiles_of_user))
        .routes(routes!(is_bound))
        .routes(routes!(binding))
        .routes(routes!(check_bindings))
}

/// base's OpenAPI document: the API and the operational endpoints.
pub fn openapi() -> utoipa::openapi::OpenApi {
    describe(routes("").into_openapi())
}

/// The whole document around the API's paths.
pub(crate) fn describe(api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    openapi::document(
        api,
        "kubescaler base",
        env!("CARGO_PKG_VERSION"),
        "Users and profiles: the store every other service reads through. Internal to the \
         cluster (no Ingress). Every failure is an `ErrorBody` with a stable `error` code.",
    )
}

/// What every operation on the store may answer besides its own result. A store's failure
/// becomes an [`ApiError`] only through this enum, so the answers the mapping gives are the
/// ones the operations describe.
#[derive(Debug, utoipa::IntoResponses)]
enum StoreErrors {
    /// The store does not answer: `unavailable`, `dependency` names it
    #[response(status = 503)]
    Unavailable(Failure),
    /// An unexpected failure: `internal`, the cause is in the service's logs
    #[response(status = 500)]
    Internal(Failure),
}

/// Unavailable names the backend and what it was doing; internal says nothing; the backend's
/// own error goes to the log either way.
impl From<StoreError> for StoreErrors {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable { backend, .. } => Self::Unavailable(Failure(
                ApiError::unavailable(backend, error.to_string()).caused_by(Arc::new(error)),
            )),
            internal @ StoreError::Internal { .. } => Self::Internal(Failure(ApiError::internal(internal))),
        }
    }
}

impl From<StoreErrors> for ApiError {
    fn from(errors: StoreErrors) -> Self {
        match errors {
            StoreErrors::Unavailable(answer) | StoreErrors::Internal(answer) => answer.into(),
        }
    }
}

/// A store's failure as [`StoreErrors`] describes it.
impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        StoreErrors::from(error).into()
    }
}

fn no_user(id: UserId) -> ApiError {
    ApiError::not_found(format!("no user {id}"))
}

fn no_profile(id: ProfileId) -> ApiError {
    ApiError::not_found(format!("no profile {id}"))
}

/// Ids are made by the service: a create may carry `"id": null` (clients that send whole
/// objects do) but not an id of its own, which would be silently replaced otherwise.
fn no_id_on_create(given: Option<impl std::fmt::Display>, what: &str) -> ApiResult<()> {
    match given {
        None => Ok(()),
        Some(id) => Err(ApiError::bad_request(
            ErrorCode::IdNotAllowed,
            format!(
                "ids are assigned by the service; leave `id` out (or null) when creating a {what}, \
                 got {id}; PUT /{what}s/{id} replaces an existing one"
            ),
        )),
    }
}

/// A replace's body may repeat the path's id, not name another record.
fn same_id<I: PartialEq + std::fmt::Display>(path: I, body: Option<I>) -> ApiResult<()> {
    match body {
        Some(other) if other != path => Err(ApiError::bad_request(
            ErrorCode::IdMismatch,
            format!("the body's id {other} differs from the path's {path}; leave `id` out or make it match"),
        )),
        _ => Ok(()),
    }
}

#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    summary = "Every user, in id order",
    responses(
        (status = 200, description = "Every user, in id order", body = Vec<User>),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip_all)]
async fn list_users(State(db): State<Db>) -> ApiResult<ApiJson<Vec<User>>> {
    Ok(ApiJson(db.list_users().await?))
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    summary = "Creates a user; base makes its id",
    request_body = NewUser,
    responses(
        (status = 201, description = "The user created, with its new id", body = User, links(
            ("GetUser" = (operation_id = "get_user", parameters(("id" = "$response.body#/id")))),
            ("ReplaceUser" = (operation_id = "replace_user", parameters(("id" = "$response.body#/id")))),
            ("DeleteUser" = (operation_id = "delete_user", parameters(("id" = "$response.body#/id")))),
            ("ProfilesOfUser" = (operation_id = "profiles_of_user", parameters(("user_id" = "$response.body#/id")))),
        )),
        BodyErrors,
        StoreErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(user.id))]
async fn create_user(State(db): State<Db>, ApiJson(body): ApiJson<UserBody>) -> ApiResult<impl IntoResponse> {
    no_id_on_create(body.id, "user")?;
    let user = User { id: UserId::new_random(), name: body.name };
    tracing::Span::current().record("user.id", tracing::field::display(user.id));
    db.create_user(&user).await?;
    Ok((StatusCode::CREATED, ApiJson(user)))
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    summary = "One user",
    params(("id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = User),
        (status = 400, description = "An id in the path is not a UUID: `invalid_id`", body = ErrorBody),
        (status = 404, description = "No such user: `not_found`", body = ErrorBody),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db))]
async fn get_user(State(db): State<Db>, Api(Path(id)): ApiPath<UserId>) -> ApiResult<ApiJson<User>> {
    db.get_user(id).await?.map(ApiJson).ok_or_else(|| no_user(id))
}

/// Replaces an existing user. An unknown id is 404, not a create: ids are made by the service,
/// and a late replace must not bring back a user deleted meanwhile.
#[utoipa::path(
    put,
    path = "/users/{id}",
    tag = "users",
    summary = "Replaces an existing user's name (an unknown id is 404, never a create)",
    params(("id" = UserId, Path, description = "The user's id")),
    request_body = UserBody,
    responses(
        (status = 200, description = "The user as stored", body = User),
        (status = 404, description = "No such user: `not_found`", body = ErrorBody),
        BodyErrors,
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db, body))]
async fn replace_user(
    State(db): State<Db>,
    Api(Path(id)): ApiPath<UserId>,
    ApiJson(body): ApiJson<UserBody>,
) -> ApiResult<ApiJson<User>> {
    same_id(id, body.id)?;
    let user = User { id, name: body.name };
    if db.replace_user(&user).await? { Ok(ApiJson(user)) } else { Err(no_user(id)) }
}

#[utoipa::path(
    delete,
    path = "/users/{id}",
    tag = "users",
    summary = "Deletes a user and removes it from every profile; an unknown id is not an error",
    params(("id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 204, description = "The user is gone"),
        (status = 400, description = "An id in the path is not a UUID: `invalid_id`", body = ErrorBody),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db))]
async fn delete_user(State(db): State<Db>, Api(Path(id)): ApiPath<UserId>) -> ApiResult<StatusCode> {
    db.announcing(BindingChange::User(id), db.delete_user(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/users",
    tag = "users",
    summary = "Deletes every user",
    responses(
        (status = 204, description = "Every user is deleted"),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip_all)]
async fn delete_all_users(State(db): State<Db>) -> ApiResult<StatusCode> {
    db.announcing(BindingChange::All, db.delete_all_users()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/profiles",
    tag = "profiles",
    summary = "Every profile, in id order",
    responses(
        (status = 200, description = "Every profile, in id order", body = Vec<Profile>),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip_all)]
async fn list_profiles(State(db): State<Db>) -> ApiResult<ApiJson<Vec<Profile>>> {
    Ok(ApiJson(db.list_profiles().await?))
}

#[utoipa::path(
    post,
    path = "/profiles",
    tag = "profiles",
    summary = "Creates a profile; base makes its id",
    request_body = NewProfile,
    responses(
        (status = 201, description = "The profile created, with its new id", body = Profile, links(
            ("GetProfile" = (operation_id = "get_profile", parameters(("id" = "$response.body#/id")))),
            ("ReplaceProfile" = (operation_id = "replace_profile", parameters(("id" = "$response.body#/id")))),
            ("DeleteProfile" = (operation_id = "delete_profile", parameters(("id" = "$response.body#/id")))),
            // To the boolean check, not to `is_bound`: whether a user is still in the profile
            // depends on what was written since (a replace, a user's delete), and `is_bound`
            // answers that with 404, which a client following the link would read as the
            // profile gone.
            ("Binding" = (operation_id = "binding", parameters(("profile_id" = "$response.body#/id"), ("user_id" = "$response.body#/users/0")))),
        )),
        BodyErrors,
        StoreErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(profile.id, users))]
async fn create_profile(
    State(db): State<Db>,
    ApiJson(body): ApiJson<ProfileBody>,
) -> ApiResult<impl IntoResponse> {
    no_id_on_create(body.id, "profile")?;
    let profile = Profile { id: ProfileId::new_random(), users: body.users };
    let span = tracing::Span::current();
    span.record("profile.id", tracing::field::display(profile.id));
    span.record("users", profile.users.len());
    db.create_profile(&profile).await?;
    Ok((StatusCode::CREATED, ApiJson(profile)))
}

#[utoipa::path(
    get,
    path = "/profiles/{id}",
    tag = "profiles",
    summary = "One profile",
    params(("id" = ProfileId, Path, description = "The profile's id")),
    responses(
        (status = 200, description = "The profile", body = Profile),
        (status = 400, description = "An id in the path is not a UUID: `invalid_id`", body = ErrorBody),
        (status = 404, description = "No such profile: `not_found`", body = ErrorBody),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db))]
async fn get_profile(State(db): State<Db>, Api(Path(id)): ApiPath<ProfileId>) -> ApiResult<ApiJson<Profile>> {
    db.get_profile(id).await?.map(ApiJson).ok_or_else(|| no_profile(id))
}

/// Replaces an existing profile's users; an unknown id is 404, as for users.
#[utoipa::path(
    put,
    path = "/profiles/{id}",
    tag = "profiles",
    summary = "Replaces an existing profile's users (an unknown id is 404, never a create)",
    params(("id" = ProfileId, Path, description = "The profile's id")),
    request_body = ProfileBody,
    responses(
        (status = 200, description = "The profile as stored", body = Profile),
        (status = 404, description = "No such profile: `not_found`", body = ErrorBody),
        BodyErrors,
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db, body))]
async fn replace_profile(
    State(db): State<Db>,
    Api(Path(id)): ApiPath<ProfileId>,
    ApiJson(body): ApiJson<ProfileBody>,
) -> ApiResult<ApiJson<Profile>> {
    same_id(id, body.id)?;
    let profile = Profile { id, users: body.users };
    let replaced = db.replace_profile(&profile).await;
    for change in replace_changes(id, &replaced) {
        db.changes.announce(change);
    }
    if replaced?.is_some() { Ok(ApiJson(profile)) } else { Err(no_profile(id)) }
}

#[utoipa::path(
    delete,
    path = "/profiles/{id}",
    tag = "profiles",
    summary = "Deletes a profile; an unknown id is not an error",
    params(("id" = ProfileId, Path, description = "The profile's id")),
    responses(
        (status = 204, description = "The profile is gone"),
        (status = 400, description = "An id in the path is not a UUID: `invalid_id`", body = ErrorBody),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db))]
async fn delete_profile(State(db): State<Db>, Api(Path(id)): ApiPath<ProfileId>) -> ApiResult<StatusCode> {
    db.announcing(BindingChange::Profile(id), db.delete_profile(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/profiles",
    tag = "profiles",
    summary = "Deletes every profile",
    responses(
        (status = 204, description = "Every profile is deleted"),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip_all)]
async fn delete_all_profiles(State(db): State<Db>) -> ApiResult<StatusCode> {
    db.announcing(BindingChange::All, db.delete_all_profiles()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/profiles/user/{user_id}",
    tag = "profiles",
    summary = "The profiles that hold a user (none for an unknown user), through the index",
    params(("user_id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The profiles holding the user, in id order", body = Vec<Profile>),
        (status = 400, description = "An id in the path is not a UUID: `invalid_id`", body = ErrorBody),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db))]
async fn profiles_of_user(
    State(db): State<Db>,
    Api(Path(user)): ApiPath<UserId>,
) -> ApiResult<ApiJson<Vec<Profile>>> {
    Ok(ApiJson(db.profiles_of_user(user).await?))
}

/// 204 when the user is in the profile; 404 (saying which) when it is not or there is no such
/// profile: the check as a status code, for clients that read it so (see docs/MIGRATION.md).
/// stream asks `GET /bindings/…`, which answers a boolean.
#[utoipa::path(
    get,
    path = "/profiles/{id}/users/{user_id}",
    tag = "profiles",
    summary = "Whether a user is in a profile, as a status (204 or 404)",
    params(("id" = ProfileId, Path, description = "The profile's id"), ("user_id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 204, description = "The user is in the profile"),
        (status = 400, description = "An id in the path is not a UUID: `invalid_id`", body = ErrorBody),
        (status = 404, description = "No such profile (`not_found`), or the user is not in it (`not_bound`)", body = ErrorBody),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db))]
async fn is_bound(
    State(db): State<Db>,
    Api(Path((id, user))): ApiPath<(ProfileId, UserId)>,
) -> ApiResult<StatusCode> {
    match db.binding(id, user).await? {
        Binding::Bound => Ok(StatusCode::NO_CONTENT),
        Binding::NotBound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotBound,
            format!("user {user} is not in profile {id}"),
        )),
        Binding::NoProfile => Err(no_profile(id)),
    }
}

/// Whether a user is in a profile, read without the profile's other users: what stream asks
/// before it takes a lock.
#[utoipa::path(
    get,
    path = "/bindings/{profile_id}/{user_id}",
    tag = "bindings",
    summary = "Whether a user is in a profile: what stream asks before it takes a lock",
    params(("profile_id" = ProfileId, Path, description = "The profile's id"), ("user_id" = UserId, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The profile exists; `bound` says whether the user is in it", body = BindingVerdict),
        (status = 400, description = "An id in the path is not a UUID: `invalid_id`", body = ErrorBody),
        (status = 404, description = "No such profile: `not_found`", body = ErrorBody),
        StoreErrors,
    ),
)]
#[tracing::instrument(skip(db))]
async fn binding(
    State(db): State<Db>,
    Api(Path((profile, user))): ApiPath<(ProfileId, UserId)>,
) -> ApiResult<ApiJson<BindingVerdict>> {
    match db.binding(profile, user).await? {
        Binding::NoProfile => Err(no_profile(profile)),
        binding => Ok(ApiJson(BindingVerdict { bound: binding.is_bound() })),
    }
}

/// Many pairs at once: what stream asks when a change may have unbound some of its pairs, and
/// in its slow sweep of every pair it holds.
#[utoipa::path(
    post,
    path = "/bindings/check",
    tag = "bindings",
    summary = "Whether each of up to 1,000 users is in its profile (false for no such profile)",
    request_body = BindingCheck,
    responses(
        (status = 200, description = "One verdict per pair, in the order asked", body = BindingVerdicts),
        BodyErrors,
        StoreErrors,
    ),
)]
#[tracing::instrument(skip_all, fields(pairs = body.pairs.as_slice().len()))]
async fn check_bindings(
    State(db): State<Db>,
    ApiJson(body): ApiJson<BindingCheck>,
) -> ApiResult<ApiJson<BindingVerdicts>> {
    let bound = futures::stream::iter(body.pairs.as_slice().iter().copied())
        .map(|pair| {
            let db = db.clone();
            async move { db.binding(pair.profile, pair.user).await.map(Binding::is_bound) }
        })
        .buffered(CHECKS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(ApiJson(BindingVerdicts { bound }))
}

#[cfg(test)]
mod tests {
    use kubescaler_core::bindings::{BindingChange, Pair};
    use kubescaler_core::{ProfileId, UserId};

    use super::{MOST_LEFT_ANNOUNCED, Removed, replace_changes};
    use crate::store::StoreError;

    #[test]
    fn a_replace_announces_who_left_or_else_the_profile() {
        let id = ProfileId::new_random();
        let left = |n: usize| (0..n).map(|_| UserId::new_random()).collect();
        let whole = vec![BindingChange::Profile(id)];
        assert_eq!(replace_changes(id, &Ok(None)), vec![]);
        assert_eq!(replace_changes(id, &Ok(Some(Removed::Users(left(0))))), vec![]);
        let one = left(1);
        let user = *one.first().unwrap();
        assert_eq!(
            replace_changes(id, &Ok(Some(Removed::Users(one)))),
            vec![BindingChange::Left(Pair { user, profile: id })]
        );
        let most = replace_changes(id, &Ok(Some(Removed::Users(left(MOST_LEFT_ANNOUNCED)))));
        assert_eq!(most.len(), MOST_LEFT_ANNOUNCED);
        assert_eq!(replace_changes(id, &Ok(Some(Removed::Users(left(MOST_LEFT_ANNOUNCED + 1))))), whole);
        assert_eq!(replace_changes(id, &Ok(Some(Removed::Unknown))), whole);
        let failed = Err(StoreError::unavailable("cassandra", "timed out"));
        assert_eq!(replace_changes(id, &failed), whole);
    }

    /// Every failure an operation describes has the one error body, so a client reads every
    /// error the same way (and schemathesis checks each against it).
    #[test]
    fn every_error_answer_is_described_as_the_error_body() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let (count, off) = kubescaler_testkit::error_answers_off_the_error_body(&doc);
        assert!(off.is_empty(), "{off:?}");
        assert!(count > 40, "{count}");
    }
}
