//! Parameter validation of the list endpoints: paging limits, cursors, state filters, ids and
//! unknown parameters are each a 400 naming the parameter.

use reqwest::StatusCode;

use crate::helpers::{json_of, spawn_app};

const LISTS: [&str; 4] = [
    "/api/v1/devices",
    "/api/v1/accounts",
    "/api/v1/alerts",
    "/api/v1/bootstraps",
];

async fn assert_bad(
    app: &crate::helpers::TestApp,
    path: &str,
    query: &[(&str, &str)],
    field: &str,
) {
    let (status, body) = json_of(app.get_query(path, query).await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {query:?}: {body}");
    assert_eq!(body["field"], field, "{path} {query:?}: {body}");
    assert!(!body["error"].as_str().unwrap().is_empty());
}

#[actix_web::test]
async fn paging_parameters_are_checked() {
    let app = spawn_app().await;
    for path in LISTS {
        let (status, body) = json_of(
            app.get_query(path, &[("limit", "500"), ("after", "0")])
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert!(body["items"].is_array());
        for limit in ["0", "501", "ten", "-1", ""] {
            assert_bad(&app, path, &[("limit", limit)], "limit").await;
        }
        assert_bad(&app, path, &[("after", "x")], "after").await;
        assert_bad(&app, path, &[("colour", "red")], "colour").await;
        assert_bad(&app, path, &[("limit", "1"), ("limit", "2")], "limit").await;
    }
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn filters_are_checked() {
    let app = spawn_app().await;
    for path in ["/api/v1/devices", "/api/v1/alerts", "/api/v1/bootstraps"] {
        assert_bad(&app, path, &[("state", "bogus")], "state").await;
        assert_bad(&app, path, &[("state", "")], "state").await;
    }
    for (state_ok, path) in [
        ("lost", "/api/v1/devices"),
        ("failed", "/api/v1/alerts"),
        ("awaiting_push", "/api/v1/bootstraps"),
    ] {
        let (status, _) = json_of(app.get_query(path, &[("state", state_ok)]).await).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let long = "x".repeat(300);
    assert_bad(&app, "/api/v1/alerts", &[("server_id", &long)], "server_id").await;
    assert_bad(&app, "/api/v1/alerts", &[("dev_id", "")], "dev_id").await;
    assert_bad(
        &app,
        "/api/v1/bootstraps",
        &[("server_id", " ")],
        "server_id",
    )
    .await;
    // The accounts list has no state filter.
    assert_bad(&app, "/api/v1/accounts", &[("state", "pending")], "state").await;
    app.stop().await.unwrap();
}
