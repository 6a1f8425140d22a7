//! base's REST API. Handlers validate through the extractors and domain types, call the
//! store, and return either JSON or an [`ApiError`]; nothing here knows which backend runs.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kubescaler_core::model::{Profile, ProfileBody, User, UserBody};
use kubescaler_core::{ProfileId, UserId, codes};
use kubescaler_server::error::{Api, ApiPath};
use kubescaler_server::host_name;
use kubescaler_server::{ApiError, ApiJson};

use crate::store::Store;

type Db = State<Arc<dyn Store>>;
type ApiResult<T> = Result<T, ApiError>;

pub fn router(store: Arc<dyn Store>, hostname: &str) -> Router {
    Router::new()
        .route("/", host_name(hostname))
        .route("/users", get(list_users).post(create_user).delete(delete_all_users))
        .route("/users/{id}", get(get_user).put(replace_user).delete(delete_user))
        .route("/profiles", get(list_profiles).post(create_profile).delete(delete_all_profiles))
        .route("/profiles/{id}", get(get_profile).put(replace_profile).delete(delete_profile))
        .route("/profiles/user/{user_id}", get(profiles_of_user))
        .route("/profiles/{id}/users/{user_id}", get(is_bound))
        .with_state(store)
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
            codes::ID_NOT_ALLOWED,
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
            codes::ID_MISMATCH,
            format!("the body's id {other} differs from the path's {path}; leave `id` out or make it match"),
        )),
        _ => Ok(()),
    }
}

#[tracing::instrument(skip_all)]
async fn list_users(State(db): Db) -> ApiResult<ApiJson<Vec<User>>> {
    Ok(ApiJson(db.list_users().await?))
}

#[tracing::instrument(skip_all, fields(user.id))]
async fn create_user(State(db): Db, ApiJson(body): ApiJson<UserBody>) -> ApiResult<impl IntoResponse> {
    no_id_on_create(body.id, "user")?;
    let user = User { id: UserId::new_random(), name: body.name };
    tracing::Span::current().record("user.id", tracing::field::display(user.id));
    db.create_user(&user).await?;
    Ok((StatusCode::CREATED, ApiJson(user)))
}

#[tracing::instrument(skip(db))]
async fn get_user(State(db): Db, Api(Path(id)): ApiPath<UserId>) -> ApiResult<ApiJson<User>> {
    db.get_user(id).await?.map(ApiJson).ok_or_else(|| no_user(id))
}

/// Replaces an existing user. An unknown id is 404, not a create: ids are made by the service,
/// and a late replace must not bring back a user deleted meanwhile.
#[tracing::instrument(skip(db, body))]
async fn replace_user(
    State(db): Db,
    Api(Path(id)): ApiPath<UserId>,
    ApiJson(body): ApiJson<UserBody>,
) -> ApiResult<ApiJson<User>> {
    same_id(id, body.id)?;
    let user = User { id, name: body.name };
    if db.replace_user(&user).await? { Ok(ApiJson(user)) } else { Err(no_user(id)) }
}

#[tracing::instrument(skip(db))]
async fn delete_user(State(db): Db, Api(Path(id)): ApiPath<UserId>) -> ApiResult<StatusCode> {
    db.delete_user(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tracing::instrument(skip_all)]
async fn delete_all_users(State(db): Db) -> ApiResult<StatusCode> {
    db.delete_all_users().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tracing::instrument(skip_all)]
async fn list_profiles(State(db): Db) -> ApiResult<ApiJson<Vec<Profile>>> {
    Ok(ApiJson(db.list_profiles().await?))
}

#[tracing::instrument(skip_all, fields(profile.id, users))]
async fn create_profile(State(db): Db, ApiJson(body): ApiJson<ProfileBody>) -> ApiResult<impl IntoResponse> {
    no_id_on_create(body.id, "profile")?;
    let profile = Profile { id: ProfileId::new_random(), users: body.users };
    let span = tracing::Span::current();
    span.record("profile.id", tracing::field::display(profile.id));
    span.record("users", profile.users.len());
    db.create_profile(&profile).await?;
    Ok((StatusCode::CREATED, ApiJson(profile)))
}

#[tracing::instrument(skip(db))]
async fn get_profile(State(db): Db, Api(Path(id)): ApiPath<ProfileId>) -> ApiResult<ApiJson<Profile>> {
    db.get_profile(id).await?.map(ApiJson).ok_or_else(|| no_profile(id))
}

/// Replaces an existing profile's users; an unknown id is 404, as for users.
#[tracing::instrument(skip(db, body))]
async fn replace_profile(
    State(db): Db,
    Api(Path(id)): ApiPath<ProfileId>,
    ApiJson(body): ApiJson<ProfileBody>,
) -> ApiResult<ApiJson<Profile>> {
    same_id(id, body.id)?;
    let profile = Profile { id, users: body.users };
    if db.replace_profile(&profile).await? { Ok(ApiJson(profile)) } else { Err(no_profile(id)) }
}

#[tracing::instrument(skip(db))]
async fn delete_profile(State(db): Db, Api(Path(id)): ApiPath<ProfileId>) -> ApiResult<StatusCode> {
    db.delete_profile(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tracing::instrument(skip_all)]
async fn delete_all_profiles(State(db): Db) -> ApiResult<StatusCode> {
    db.delete_all_profiles().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[tracing::instrument(skip(db))]
async fn profiles_of_user(
    State(db): Db,
    Api(Path(user)): ApiPath<UserId>,
) -> ApiResult<ApiJson<Vec<Profile>>> {
    Ok(ApiJson(db.profiles_of_user(user).await?))
}

/// 204 when the user is in the profile; 404 (saying which) when it is not or there is no such
/// profile. stream asks this before it takes a lock.
#[tracing::instrument(skip(db))]
async fn is_bound(
    State(db): Db,
    Api(Path((id, user))): ApiPath<(ProfileId, UserId)>,
) -> ApiResult<StatusCode> {
    let profile = db.get_profile(id).await?.ok_or_else(|| no_profile(id))?;
    if profile.users.contains(user) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_BOUND,
            format!("user {user} is not in profile {id}"),
        ))
    }
}
