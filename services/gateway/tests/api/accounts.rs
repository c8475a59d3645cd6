//! `/api/v1/accounts`: add (201 + Location), show, list, delete; 409 for a taken ServerID, 422
//! naming the field for each invalid input, 404 for unknown accounts.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{account, json_of, seg, spawn_app};

#[actix_web::test]
async fn an_account_is_added_shown_listed_and_deleted() {
    let app = spawn_app().await;
    let resp = app.post_account(&account("dms-1")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp
        .headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(location, "/api/v1/accounts/dms-1");
    let (_, created) = json_of(resp).await;
    assert_eq!(created["server_id"], "dms-1");
    assert_eq!(created["origin"], "operator");
    assert_eq!(created["aauth_pref"], "DIGEST");
    assert_eq!(created["addresses"][0]["addr"], "http://127.0.0.1:9/dm");
    let auths = created["auths"].as_array().unwrap();
    assert_eq!(auths.len(), 2);
    assert!(auths.iter().all(|a| a["has_secret"] == true));
    assert!(auths.iter().any(|a| a["level"] == "SRVCRED"));

    let (status, shown) = app.get_json(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, created);

    let (status, list) = app.get_json("/api/v1/accounts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"], Value::Array(vec![created]));
    assert_eq!(list["next"], Value::Null);

    let resp = app.delete(&location).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.text().await.unwrap().is_empty());
    for resp in [app.get(&location).await, app.delete(&location).await] {
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "account \"dms-1\" not found");
    }
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn a_taken_server_id_is_409() {
    let app = spawn_app().await;
    app.add_account("dms-dup").await;
    let mut again = account("dms-dup");
    again["addr"] = json!("http://127.0.0.1:10/other");
    let (status, body) = json_of(app.post_account(&again).await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "account \"dms-dup\" already exists");
    // The first one is unchanged.
    let (_, shown) = app.get_json("/api/v1/accounts/dms-dup").await;
    assert_eq!(shown["addresses"][0]["addr"], "http://127.0.0.1:9/dm");
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn each_invalid_field_is_named() {
    let app = spawn_app().await;
    let with = |key: &str, value: Value| {
        let mut a = account("dms-bad");
        a[key] = value;
        a
    };
    let without = |key: &str| {
        let mut a = account("dms-bad");
        a.as_object_mut().unwrap().remove(key);
        a
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("server_id", json!("  ")), "server_id"),
        (with("server_id", json!("x".repeat(200))), "server_id"),
        (with("addr", json!("ftp://dms.example/dm")), "addr"),
        (with("addr", json!("not a url")), "addr"),
        (with("allow_plain_http", json!(false)), "addr"),
        (with("auth_type", json!("X509")), "auth_type"),
        (with("auth_name", json!("")), "auth_name"),
        (with("auth_secret", json!("")), "auth_secret"),
        (with("server_auth_secret", Value::Null), "server_auth_name"),
        (
            with("bootstrap_server_url", json!("gopher://bs")),
            "bootstrap_server_url",
        ),
        (without("addr"), "addr"),
        (without("auth_secret"), "auth_secret"),
        (with("colour", json!("red")), "colour"),
    ];
    for (body, field) in cases {
        let (status, err) = json_of(app.post_account(&body).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {err}");
        assert_eq!(err["field"], field, "{err}");
        assert!(
            err["error"].as_str().unwrap().starts_with(field),
            "{field}: {err}"
        );
    }
    // A value of the wrong type: 422, and the message says what was expected.
    let (status, err) = json_of(app.post_account(&with("port", json!("eighty"))).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("expected u16"),
        "{err}"
    );
    // Nothing was stored.
    let (_, list) = app.get_json("/api/v1/accounts").await;
    assert_eq!(list["items"], Value::Array(vec![]));
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn server_ids_with_reserved_characters_have_usable_locations() {
    let app = spawn_app().await;
    let id = "urn:dms/eu west+1";
    let resp = app.post_account(&account(id)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/accounts/{}", seg(id)));
    let (status, body) = app.get_json(&location).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_id"], id);
    assert_eq!(app.delete(&location).await.status(), StatusCode::NO_CONTENT);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn accounts_are_paged() {
    let app = spawn_app().await;
    for i in 0..3 {
        app.add_account(&format!("dms-p{i}")).await;
    }
    let (_, first) = app.get_json("/api/v1/accounts?limit=2").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let next = first["next"].as_i64().unwrap();
    let (_, last) = app
        .get_json(&format!("/api/v1/accounts?limit=2&after={next}"))
        .await;
    assert_eq!(last["items"][0]["server_id"], "dms-p2");
    assert_eq!(last["next"], Value::Null);
    app.stop().await.unwrap();
}
