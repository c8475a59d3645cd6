//! Errors from the HTTP layer itself, all as JSON through the API's error type: oversized bodies
//! (413), malformed JSON (400), wrong content type (415), unknown routes (404), wrong methods (405).

use std::io::{Read, Write};
use std::net::TcpStream;

use reqwest::StatusCode;

use crate::helpers::{TOKEN, account, json_of, spawn_app};

#[actix_web::test]
async fn an_oversized_body_is_413() {
    let app = spawn_app().await;
    let limit = app.state.settings.max_body_bytes;
    let mut body = account("dms-big");
    body["name"] = serde_json::Value::String("n".repeat(limit));
    let (status, err) = json_of(app.post_account(&body).await).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(
        err["error"],
        format!("the body is larger than the limit of {limit} bytes")
    );
    let (status, _) = app.get_json("/api/v1/accounts/dms-big").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn an_oversized_chunked_body_is_413() {
    let app = spawn_app().await;
    let limit = app.state.settings.max_body_bytes;
    let addr = app.address.trim_start_matches("http://").to_owned();
    // A chunked body announces no length: the limit is enforced while reading. Plain blocking
    // I/O runs on a blocking thread; the test's runtime stays free to serve.
    let response = actix_web::rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /api/v1/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        let chunk = vec![b' '; 8192];
        let mut sent = 0;
        while sent <= limit {
            let frame = format!("{:x}\r\n", chunk.len());
            if s.write_all(frame.as_bytes()).is_err()
                || s.write_all(&chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
            sent += chunk.len();
        }
        let _ = s.write_all(b"0\r\n\r\n");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(
        response.contains("\"error\":\"the body is larger than the limit"),
        "{response}"
    );
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn malformed_json_is_400_with_the_reason() {
    let app = spawn_app().await;
    for body in [
        &b"{\"server_id\": "[..],
        b"not json",
        b"",
        b"{\"server_id\": \"x\",}",
    ] {
        let (status, err) = json_of(app.post_raw(body.to_vec(), "application/json").await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        let msg = err["error"].as_str().unwrap();
        assert!(msg.starts_with("malformed JSON body: "), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
    }
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn other_content_types_are_415() {
    let app = spawn_app().await;
    let body = serde_json::to_vec(&account("dms-ct")).unwrap();
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, err) = json_of(app.post_raw(body.clone(), ct).await).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
        assert!(err["error"].as_str().unwrap().contains("application/json"));
    }
    let (status, _) = json_of(app.post_raw(body, "application/json; charset=utf-8").await).await;
    assert_eq!(status, StatusCode::CREATED);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "no such endpoint");
    let (status, body) = app.get_json("/api/v1/devices/a/b").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    for (method, path) in [
        (reqwest::Method::PUT, "/api/v1/accounts"),
        (reqwest::Method::POST, "/api/v1/devices"),
        (reqwest::Method::PATCH, "/api/v1/accounts/dms-1"),
        (reqwest::Method::DELETE, "/api/v1/alerts"),
        (reqwest::Method::POST, "/metrics"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(body["error"], "method not allowed on this endpoint");
    }
    app.stop().await.unwrap();
}
