//! The query string of main's `POST /testdata`, read as the route reads it: axum's `Query`
//! extractor (serde_urlencoded), then `Params::validate`.
//!
//! Asserts: neither step panics; the extractor and serde_urlencoded read the same parameters;
//! a validated query has both sizes within [MIN_SIZE, MAX_SIZE]; a refusal is a 400
//! `invalid_parameter` that names the bounds.

#![no_main]

use axum::extract::Query;
use axum::http::{StatusCode, Uri};
use kubescaler_main::testdata::{MAX_SIZE, MIN_SIZE, Params};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let query = String::from_utf8_lossy(data);
    let direct = serde_urlencoded::from_str::<Params>(&query);
    if let Ok(params) = &direct {
        check(params);
    }
    // A query reaches the route only inside a request target that parses as a URI.
    let Ok(uri) = format!("/testdata?{query}").parse::<Uri>() else { return };
    let extracted = Query::<Params>::try_from_uri(&uri);
    if let Ok(Query(params)) = &extracted {
        check(params);
    }
    if uri.query() == Some(&*query) {
        let fields = |p: &Params| (p.profiles, p.users_per_profile, p.seed);
        assert_eq!(
            extracted.as_ref().ok().map(|Query(p)| fields(p)),
            direct.as_ref().ok().map(fields),
            "the extractor reads what serde_urlencoded reads"
        );
    }
});

fn check(params: &Params) {
    let sizes = [params.profiles, params.users_per_profile];
    let in_bounds = sizes.iter().flatten().all(|size| (MIN_SIZE..=MAX_SIZE).contains(size));
    match params.validate() {
        Ok(()) => assert!(in_bounds, "validated {params:?}"),
        Err(error) => {
            assert!(!in_bounds, "refused {params:?}: {error}");
            assert_eq!(error.status(), StatusCode::BAD_REQUEST);
            assert_eq!(error.code(), "invalid_parameter");
            assert!(error.message().contains(&format!("between {MIN_SIZE} and {MAX_SIZE}")), "{error}");
        }
    }
}
