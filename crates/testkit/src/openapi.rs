//! Checks that a service's OpenAPI document tells the truth about what it serves.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::Http;

/// The routes a service serves and the operations its OpenAPI document describes are the same
/// set. `doc` is the document as served; `prefix` is where the API is mounted (`""` or
/// `/main`); `sources` are the service's route-registering source files, whose `.route("…")`
/// literals must each be a documented path or one of `undocumented` (files that are not API).
///
/// Every documented operation is sent once (ids filled in at random, `{}` as a body), so run
/// it against a service whose data the test owns: it deletes.
pub async fn assert_routes_match_document(
    http: &Http,
    doc: &Value,
    prefix: &str,
    sources: &[&str],
    undocumented: &[&str],
) {
    const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];
    let paths = doc["paths"].as_object().expect("the document has paths");
    assert!(!paths.is_empty(), "the document describes no path");
    for (path, item) in paths {
        let concrete = fill_path_parameters(path);
        // A path item may say it is served elsewhere (the operational endpoints: at the root).
        let prefix = item["servers"][0]["url"].as_str().map_or(prefix, |url| url.trim_end_matches('/'));
        for method in METHODS {
            let documented = item.get(method).is_some();
            let mut request = http.client.request(
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                http.url(&format!("{prefix}{concrete}")),
            );
            if matches!(method, "post" | "put" | "patch") {
                request = request.json(&serde_json::json!({}));
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            let code = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let fallback = (status == StatusCode::NOT_FOUND && code == "no_route")
                || (status == StatusCode::METHOD_NOT_ALLOWED && code == "method_not_allowed");
            if documented {
                assert!(
                    !fallback,
                    "{} {path} is documented but not served: {status} {text}",
                    method.to_uppercase()
                );
            } else {
                assert!(
                    status == StatusCode::METHOD_NOT_ALLOWED && code == "method_not_allowed",
                    "{} {path} is served ({status} {text}) but not documented",
                    method.to_uppercase()
                );
            }
        }
    }
    for source in sources {
        // The file's own tests may serve routes of their own.
        let source = source.split("#[cfg(test)]").next().unwrap_or(source);
        for literal in source.split(".route(\"").skip(1).filter_map(|rest| rest.split('"').next()) {
            assert!(
                paths.contains_key(literal) || undocumented.contains(&literal),
                "the route {literal} is registered but not in the document"
            );
        }
    }
}

/// `/users/{id}` → `/users/<random uuid>`.
fn fill_path_parameters(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                uuid::Uuid::new_v4().to_string()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every answer of 400 and above that `doc` describes is the one error body (`ErrorBody`):
/// how many there are, and the ones that are not (`METHOD path status`).
pub fn error_answers_off_the_error_body(doc: &Value) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut off = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("the document has paths") {
        // A path item's `servers` is not an operation.
        for (method, operation) in item.as_object().into_iter().flatten().filter(|(key, _)| *key != "servers")
        {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                if status.as_str() >= "400" {
                    count += 1;
                    if response["content"]["application/json"]["schema"]["$ref"]
                        != "#/components/schemas/ErrorBody"
                    {
                        off.push(format!("{} {path} {status}", method.to_uppercase()));
                    }
                }
            }
        }
    }
    (count, off)
}
