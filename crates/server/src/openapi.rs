//! What every service's OpenAPI description shares: the error body, the operational
//! endpoints, and `/openapi.json` itself.
//!
//! The services describe their API next to each handler (`#[utoipa::path]`) and register
//! handlers only through `utoipa_axum::routes!`, so a route and its description are one
//! registration and cannot drift apart; the tests probe every documented operation and fail
//! on a route of the router's table the document lacks. A failure an operation describes is a
//! variant of an `IntoResponses` enum holding a [`Failure`], which the service's error mapping
//! produces, so the mapping cannot answer what the description leaves out.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{Info, OpenApi as Document, Server};
use utoipa::{OpenApi, PartialSchema};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};

use crate::ApiError;

/// Every failure's body: `{"error": code, "message": …}`, and, depending on the failure, the
/// fields below. Clients branch on `error`, never on `message`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code (one of `kubescaler_core::ErrorCode::ALL`).
    #[schema(schema_with = error_code)]
    pub error: String,
    /// What went wrong, for a person.
    pub message: String,
    /// Which dependency failed (`cassandra`, `redis`, `base`), on 502, 503 and 504.
    pub dependency: Option<String>,
    /// When to try again, in milliseconds (`Retry-After` has it in whole seconds).
    pub retry_after_ms: Option<u64>,
}

fn error_code() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(kubescaler_core::ErrorCode::ALL.iter().map(|code| code.as_str())))
        .description(Some("A stable code: clients branch on it, never on `message`"))
        .build()
}

/// An answer with the error body, as a variant of a service's `IntoResponses` enum carries it:
/// described as [`ErrorBody`], holding the [`ApiError`] it is. A service's mapping of its errors
/// produces such an enum, and only the enum turns into an `ApiError`, so an answer the mapping
/// can give is one the description lists.
#[derive(Debug)]
pub struct Failure(pub ApiError);

impl From<Failure> for ApiError {
    fn from(Failure(answer): Failure) -> Self {
        answer
    }
}

impl utoipa::PartialSchema for Failure {
    fn schema() -> RefOr<Schema> {
        ErrorBody::schema()
    }
}

impl utoipa::ToSchema for Failure {
    // The error body's name, so every answer refers to the one `ErrorBody` component.
    fn name() -> Cow<'static, str> {
        ErrorBody::name()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((ErrorBody::name().into_owned(), ErrorBody::schema()));
        <ErrorBody as utoipa::ToSchema>::schemas(schemas);
    }
}

/// What `/livez` and `/health` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alive {
    /// Always `alive`.
    pub status: String,
}

/// What `/readyz` answers when every dependency answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// Always `ready`.
    pub status: String,
    /// Each dependency's check: `ok`.
    pub checks: std::collections::BTreeMap<String, String>,
}

/// The operational endpoints every service serves, and the document's own route.
#[derive(OpenApi)]
#[openapi(paths(
    crate::router::livez,
    crate::router::health,
    crate::readiness::readyz,
    crate::metrics::metrics_text,
    openapi_json
))]
struct Operational;

/// The tag of the operational endpoints in every service's document.
pub const OPS_TAG: &str = "operations";

/// The description of `/openapi.json`; the handler is [`serve`].
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = OPS_TAG,
    responses((status = 200, description = "This service's OpenAPI 3.1 description", content_type = "application/json"))
)]
#[allow(dead_code)]
async fn openapi_json() {}

/// A service's whole document: its API, the operational endpoints and `/openapi.json`, under
/// `title` and the service's version.
pub fn document(api: Document, title: &str, version: &str, description: &str) -> Document {
    let mut doc = api.merge_from(Operational::openapi());
    let mut info = Info::new(title, version);
    info.description = Some(description.to_owned());
    doc.info = info;
    doc
}

/// The paths of the operational endpoints, which a service serves at its root only.
pub const OPS_PATHS: [&str; 4] = ["/livez", "/health", "/readyz", "/metrics"];

/// The same document with the servers it is reached at (relative URLs, resolved against the
/// address the document was fetched from).
pub fn with_servers(mut doc: Document, servers: &[(&str, &str)]) -> Document {
    doc.servers = Some(
        servers
            .iter()
            .map(|(url, description)| {
                let mut server = Server::new(*url);
                server.description = Some((*description).to_owned());
                server
            })
            .collect(),
    );
    // The operational endpoints stay at the root whatever prefix the API is under.
    for path in OPS_PATHS {
        if let Some(item) = doc.paths.paths.get_mut(path) {
            item.servers = Some(vec![Server::new("/")]);
        }
    }
    doc
}

/// `GET /openapi.json`: the document, serialised once.
pub fn serve<S: Clone + Send + Sync + 'static>(doc: &Document) -> MethodRouter<S> {
    // A document built from our own types always serialises; an empty object would be a bug
    // the route-vs-document test reports at once.
    let json: Arc<str> = Arc::from(doc.to_json().unwrap_or_else(|_| "{}".to_owned()));
    get(move || {
        let json = json.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], json.to_string()).into_response() }
    })
}

/// The description of `GET /`; the handler is [`crate::host_name`].
#[utoipa::path(
    get,
    path = "/",
    tag = OPS_TAG,
    summary = "The name of the instance that answered (the pod name under Kubernetes)",
    responses((status = 200, description = "The instance's name", content_type = "text/plain", body = String))
)]
#[allow(dead_code)]
async fn root() {}

/// `GET /` answering the instance's name, registered with its description.
pub fn documented_host_name<S: Clone + Send + Sync + 'static>(name: &str) -> UtoipaMethodRouter<S> {
    let (schemas, paths, _): UtoipaMethodRouter<S> = utoipa_axum::routes!(root);
    (schemas, paths, crate::host_name(name))
}

/// A service's router and its document, `/openapi.json` added to both.
pub fn split(router: OpenApiRouter, doc: impl FnOnce(Document) -> Document) -> (Router, Document) {
    let (router, api) = router.split_for_parts();
    let doc = doc(api);
    (router.route("/openapi.json", serve(&doc)), doc)
}

/// The failures of reading a JSON body (`ApiJson`), as every operation that takes one answers
/// them: what [`ApiJson`](crate::ApiJson)'s rejection mapping produces.
#[derive(Debug, utoipa::IntoResponses)]
pub enum BodyErrors {
    /// The body is not JSON (`malformed_json`) or cannot be read (`unreadable_body`); or, where
    /// the operation says, a path id is not a UUID (`invalid_id`) or the body names an id it may
    /// not (`id_not_allowed`, `id_mismatch`)
    #[response(status = 400)]
    BadRequest(Failure),
    /// The body is larger than 1 MiB: `body_too_large`
    #[response(status = 413)]
    TooLarge(Failure),
    /// The body is not `application/json`: `unsupported_media_type`
    #[response(status = 415)]
    UnsupportedMediaType(Failure),
    /// The JSON does not fit the schema or its limits: `invalid_body`, naming the field
    #[response(status = 422)]
    Invalid(Failure),
}

impl From<BodyErrors> for ApiError {
    fn from(errors: BodyErrors) -> Self {
        match errors {
            BodyErrors::BadRequest(answer)
            | BodyErrors::TooLarge(answer)
            | BodyErrors::UnsupportedMediaType(answer)
            | BodyErrors::Invalid(answer) => answer.into(),
        }
    }
}
