//! `/healthz` and `/readyz` answer without a token (container health checks).

use reqwest::StatusCode;

use crate::helpers::{json_of, spawn_app};

#[actix_web::test]
async fn health_and_readiness_need_no_token() {
    let app = spawn_app().await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        let (code, body) = json_of(resp).await;
        assert_eq!(code, StatusCode::OK, "{path}");
        assert_eq!(body["status"], status, "{path}");
        // A wrong token does not matter here either.
        let resp = app
            .client
            .get(app.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
    }
    let resp = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn readiness_turns_off_at_shutdown() {
    let app = spawn_app().await;
    let state = app.state.clone();
    assert!(state.is_ready());
    app.stop().await.unwrap();
    assert!(!state.is_ready());
}

#[actix_web::test]
async fn dmgw_health_passes_on_a_ready_gateway_and_fails_on_a_stopped_one() {
    use gateway::health::{HealthArgs, HealthError, ProbeError, run};
    let app = spawn_app().await;
    let args = HealthArgs {
        url: Some(app.url("/readyz")),
        ca_cert: None,
        timeout: 5,
    };
    let answer = run(&args).await.unwrap();
    assert!(answer.starts_with("200 "), "{answer}");
    assert!(answer.contains("ready"), "{answer}");
    let not_found = HealthArgs {
        url: Some(app.url("/no-such-path")),
        ..args.clone()
    };
    assert!(matches!(
        run(&not_found).await,
        Err(HealthError::Probe(ProbeError::Unhealthy {
            status: 404,
            ..
        }))
    ));
    app.stop().await.unwrap();
    assert!(matches!(
        run(&args).await,
        Err(HealthError::Probe(ProbeError::Http { .. }))
    ));
}
