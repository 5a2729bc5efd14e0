//! The served OpenAPI document parses, describes every route, and has no dangling `$ref`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools may panic on bad setup

use serde_json::Value;

fn document() -> Value {
    serde_json::from_str(countersign_http::OPENAPI).expect("openapi.json is valid JSON")
}

#[test]
fn is_openapi_3_1() {
    assert_eq!(document()["openapi"], "3.1.0");
}

#[test]
fn every_route_is_described() {
    let doc = document();
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let routes = [
        ("post", "/v1/actions"),
        ("get", "/v1/actions/{id}"),
        ("post", "/v1/actions/{id}/answer"),
        ("post", "/v1/actions/{id}/cancel"),
        ("post", "/v1/actions/{id}/result"),
        ("get", "/v1/reviews"),
        ("post", "/v1/reviews/{id}/votes"),
        ("post", "/v1/grants/redeem"),
        ("get", "/v1/keys"),
        ("get", "/v1/whoami"),
        ("get", "/v1/admin/api-keys"),
        ("post", "/v1/admin/api-keys"),
        ("post", "/v1/admin/api-keys/{id}/revoke"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ];
    for (method, path) in routes {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("path {path} is missing"));
        assert!(
            item.get(method).is_some_and(Value::is_object),
            "{} {path} is missing",
            method.to_uppercase()
        );
    }
}

/// Resolves a local JSON pointer such as `#/components/schemas/Action`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn collect_refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s);
                    }
                }
                collect_refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn every_ref_points_at_a_component() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty(), "the document uses no `$ref` at all");
    for r in refs {
        assert!(
            r.starts_with("#/components/"),
            "`{r}` does not point under #/components/"
        );
        assert!(
            resolve(&doc, r).is_some_and(Value::is_object),
            "`{r}` points at nothing"
        );
    }
}

/// The API description's error table ("`code` is stable and always maps to the same HTTP
/// status: 400 `invalid_request`; ...") agrees with `ErrorCode::status`, code by code.
#[test]
fn the_documented_error_statuses_are_the_enums() {
    let doc = document();
    let text = doc["info"]["description"].as_str().expect("a description");
    let table = text
        .split("always maps to the same HTTP status: ")
        .nth(1)
        .and_then(|rest| rest.split(". `message`").next())
        .expect("the error table");
    let mut checked = 0;
    for group in table.split("; ") {
        let (status, codes) = group.split_once(' ').expect("STATUS `code`, ...");
        let status: u16 = status.parse().expect("a status");
        for code in codes.split(", ") {
            let code = code.trim_matches('`');
            let known = countersign_api::ErrorCode::parse(code)
                .unwrap_or_else(|| panic!("`{code}` is documented but not an ErrorCode"));
            assert_eq!(known.status().as_u16(), status, "{code}");
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} codes found in the table");
}
