//! Checks that a service's OpenAPI document tells the truth about what it serves.

use std::fmt::Debug;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::Http;

/// The routes a service serves and the operations its OpenAPI document describes are the same
/// set, both ways. `router` is the service's router as built, `http` reaches a service serving
/// that router, `doc` is its document as served, `prefixes` are where the API is mounted (`""`,
/// and `/main` for main), and `undocumented` lists the served paths that are no operation (the
/// files of a page), as at the root.
///
/// Every documented operation is sent once under every prefix (ids filled in at random, `{}` as
/// a body), and must not meet the router's fallbacks; every other method on a documented path
/// must meet the 405 one. Every path in the router's table must be a documented (or listed)
/// path under one of the prefixes. Run it against a service whose data the test owns: it deletes.
pub async fn assert_routes_match_document(
    http: &Http,
    router: &impl Debug,
    doc: &Value,
    prefixes: &[&str],
    undocumented: &[&str],
) {
    let paths = doc["paths"].as_object().expect("the document has paths");
    assert!(!paths.is_empty(), "the document describes no path");
    for prefix in prefixes {
        for (path, item) in paths {
            assert_served_as_documented(http, prefix, path, item).await;
        }
    }
    let served = route_table(router);
    assert!(
        served.iter().any(|path| paths.contains_key(path.as_str())),
        "no route of the router's table is documented: {served:?}"
    );
    for path in &served {
        let documented = prefixes.iter().any(|prefix| {
            let Some(rest) = path.strip_prefix(prefix) else { return false };
            // A router nested under a prefix serves its root at the bare prefix.
            let rest = if rest.is_empty() { "/" } else { rest };
            paths.contains_key(rest) || undocumented.contains(&rest)
        });
        assert!(documented, "the route {path} is served but not in the document");
    }
}

/// Each method on `prefix` + `path` (the path item's own server instead, if it names one):
/// served when documented, 405 when not.
async fn assert_served_as_documented(http: &Http, prefix: &str, path: &str, item: &Value) {
    const METHODS: [&str; 6] = ["get", "head", "post", "put", "delete", "patch"];
    let concrete = fill_path_parameters(path);
    // A path item may say it is served elsewhere (the operational endpoints: at the root).
    let prefix = item["servers"][0]["url"].as_str().map_or(prefix, |url| url.trim_end_matches('/'));
    for method in METHODS {
        // axum answers HEAD with the GET's handler unless one is registered for it, and a HEAD's
        // answer has no body to tell a fallback's 404 from the handler's own; only a HEAD the
        // document describes, or a path with no GET, says something.
        if method == "head" && item.get("head").is_none() && item.get("get").is_some() {
            continue;
        }
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
        let fallback = if method == "head" {
            status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED
        } else {
            (status == StatusCode::NOT_FOUND && code == "no_route")
                || (status == StatusCode::METHOD_NOT_ALLOWED && code == "method_not_allowed")
        };
        let not_allowed =
            status == StatusCode::METHOD_NOT_ALLOWED && (method == "head" || code == "method_not_allowed");
        if documented {
            assert!(
                !fallback,
                "{} {prefix}{path} is documented but not served: {status} {text}",
                method.to_uppercase()
            );
        } else {
            assert!(
                not_allowed,
                "{} {prefix}{path} is served ({status} {text}) but not documented",
                method.to_uppercase()
            );
        }
    }
}

/// The paths of a router's table. axum lists its routes nowhere but in its `Debug` output
/// (`paths: {RouteId(n): "/x", …}`, the routes' first and the fallbacks' after them), so that is
/// what is read; a change of that output fails the check above, which expects documented paths
/// among them.
fn route_table(router: &impl Debug) -> Vec<String> {
    let text = format!("{router:?}");
    let routes = text.split("fallback_router:").next().unwrap_or_default();
    let mut paths: Vec<String> = routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|rest| rest.split_once("): \"")?.1.split('"').next())
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths.dedup();
    paths
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
