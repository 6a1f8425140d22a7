//! main's OpenAPI document and its browsable page.

use std::sync::Arc;
use std::time::Duration;

use kubescaler_main::Mount;
use kubescaler_main::launched::{LaunchedReader, RedisLaunched};
use kubescaler_server::Service;
use prometheus::Registry;
use reqwest::StatusCode;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{Http, Running, main_config, require_redis, spawn_base, spawn_suite};

async fn document(http: &Http, path: &str) -> Value {
    let response = http.client.get(http.url(path)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_served() {
    // Its own keyspace: the check sends every operation once, dropping the test data too.
    let redis = require_redis().await;
    let base = spawn_base("kubescaler_test_main_openapi").await;
    let config = main_config(&base.http.base_url, vec![redis]);
    let launched: Arc<dyn LaunchedReader> = Arc::new(RedisLaunched::new(&config.redis).unwrap());
    let shutdown = CancellationToken::new();
    let router =
        kubescaler_main::app(&config, launched, Mount::RootAndPrefix, shutdown.clone(), Registry::new())
            .unwrap();
    let service = Service::bind("main", &config.common, 0, router.clone(), shutdown.clone()).await.unwrap();
    let main = Running::start(service, shutdown);
    main.wait_ready(Duration::from_secs(30)).await;
    let doc = document(&main.http, "/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc, document(&main.http, "/main/openapi.json").await, "one document under both mounts");
    assert_eq!(doc, serde_json::to_value(kubescaler_main::routes::openapi()).unwrap());
    kubescaler_testkit::assert_routes_match_document(&main.http, &router, &doc, &["", "/main"], DOCS_FILES)
        .await;
}

/// The files of the API page (swagger-ui's), served under both mounts: parts of a page, not
/// operations. Its own index page there is not linked.
const DOCS_FILES: &[&str] = &[
    "/docs/assets",
    "/docs/assets/",
    "/docs/assets/swagger-ui.css",
    "/docs/assets/swagger-ui.css.map",
    "/docs/assets/swagger-ui-bundle.js",
    "/docs/assets/swagger-ui-bundle.js.map",
    "/docs/assets/oauth2-redirect.html",
    "/docs/assets/oauth2-redirect.js",
];

#[tokio::test]
async fn the_document_describes_errors_limits_and_auth() {
    let doc = serde_json::to_value(kubescaler_main::routes::openapi()).unwrap();
    let post = &doc["paths"]["/testdata"]["post"];
    let params: Vec<&str> =
        post["parameters"].as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(params, ["profiles", "users_per_profile", "seed"]);
    // The bounds the generator enforces (the document once said 1 where the code says 2).
    use kubescaler_main::testdata::{MAX_SIZE, MIN_SIZE};
    for parameter in &post["parameters"].as_array().unwrap()[..2] {
        assert_eq!(parameter["schema"]["minimum"], MIN_SIZE, "{parameter}");
        assert_eq!(parameter["schema"]["maximum"], MAX_SIZE, "{parameter}");
    }
    for status in ["400", "401", "409"] {
        assert_eq!(
            post["responses"][status]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "POST /testdata {status}"
        );
    }
    assert_eq!(doc["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
    assert_eq!(doc["servers"][0]["url"], "/main");
    let login = &doc["paths"]["/login/{user_id}"]["get"]["responses"];
    for status in ["200", "400", "502", "503", "504"] {
        assert!(login.get(status).is_some(), "GET /login/{{user_id}} {status}");
    }
}

#[tokio::test]
async fn the_api_page_and_its_files_are_served_under_both_mounts() {
    let (_base, main) = spawn_suite(crate::helpers::SHARED_KEYSPACE).await;
    for prefix in ["", "/main"] {
        let page = main.http.client.get(main.http.url(&format!("{prefix}/docs"))).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let html = page.text().await.unwrap();
        // Relative addresses only: the page works wherever main is mounted, and loads nothing
        // from elsewhere.
        assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
        for asset in ["docs/assets/swagger-ui.css", "docs/assets/swagger-ui-bundle.js"] {
            assert!(html.contains(&format!("\"{asset}\"")), "{asset} in {html}");
            let response =
                main.http.client.get(main.http.url(&format!("{prefix}/{asset}"))).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{prefix}/{asset}");
            assert!(response.bytes().await.unwrap().len() > 10_000, "{prefix}/{asset} is the real file");
        }
        assert!(html.contains("url: \"openapi.json\""));
    }
}
