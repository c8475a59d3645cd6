//! `/api-docs/openapi.json`: generated, lists every route, carries the bearer scheme.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[actix_web::test]
async fn the_openapi_document_lists_every_path() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json("/api-docs/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, methods) in [
        ("/api/v1/devices", &["get"][..]),
        ("/api/v1/devices/{dev_id}", &["get", "delete"]),
        ("/api/v1/accounts", &["get", "post"]),
        ("/api/v1/accounts/{server_id}", &["get", "delete"]),
        ("/api/v1/alerts", &["get"]),
        ("/api/v1/bootstraps", &["get"]),
        ("/api/v1/tree", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
        ("/api-docs/openapi.json", &["get"]),
    ] {
        for m in methods {
            assert!(doc["paths"][path][m].is_object(), "{m} {path}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer_token"]["scheme"],
        "bearer"
    );
    assert!(doc["security"].to_string().contains("bearer_token"));
    for schema in [
        "AccountView",
        "AccountInput",
        "DeviceView",
        "DeviceDetail",
        "AlertRow",
        "BootstrapJob",
        "TreeNode",
        "ErrorBody",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let post = &doc["paths"]["/api/v1/accounts"]["post"]["responses"];
    for code in ["201", "400", "401", "409", "413", "415", "422"] {
        assert!(post[code].is_object(), "POST accounts {code}");
    }
    let params = doc["paths"]["/api/v1/alerts"]["get"]["parameters"].to_string();
    for p in ["limit", "after", "state", "server_id", "dev_id"] {
        assert!(params.contains(&format!("\"{p}\"")), "{p} in {params}");
    }
    app.stop().await.unwrap();
}
