//! `/api/v1/tree`: the management tree below a URI; an added account appears with its secrets
//! redacted; bad URIs are 400 and missing nodes 404.

use omadm::secret::Secret;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{NONCE, json_of, spawn_app};

/// The child of `node` named `name`.
fn child<'a>(node: &'a Value, name: &str) -> &'a Value {
    node["children"]
        .as_array()
        .unwrap_or_else(|| panic!("{node} has no children"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {node}"))
}

#[actix_web::test]
async fn an_added_account_shows_in_the_tree_with_its_secrets_redacted() {
    let app = spawn_app().await;
    let created = app.add_account("dms-tree").await;
    app.state
        .store
        .update_auth_data("dms-tree", "CLCRED", Some(&Secret::new(NONCE)))
        .await
        .unwrap();
    let (_, shown) = app.get_json("/api/v1/accounts/dms-tree").await;
    assert!(
        shown["auths"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["has_data"] == true)
    );

    let (status, dmacc) = json_of(app.get_query("/api/v1/tree", &[("uri", "./DMAcc")]).await).await;
    assert_eq!(status, StatusCode::OK, "{dmacc}");
    assert_eq!(dmacc["name"], "DMAcc");
    assert_eq!(dmacc["format"], "node");
    let node = created["node_name"].as_str().unwrap();
    let acc = child(&dmacc, node);
    assert_eq!(acc["uri"], format!("./DMAcc/{node}"));
    let server_id = child(acc, "ServerID");
    assert_eq!(server_id["value"], "dms-tree");
    assert_eq!(server_id["encoding"], "text");
    assert_eq!(server_id["redacted"], false);
    let auths = child(acc, "AppAuth");
    let mut redacted = 0;
    for auth in auths["children"].as_array().unwrap() {
        for secret in ["AAuthSecret", "AAuthData"] {
            if let Some(leaf) = auth["children"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == secret)
            {
                assert_eq!(leaf["value"], Value::Null, "{leaf}");
                assert_eq!(leaf["redacted"], true, "{leaf}");
                assert!(leaf.get("encoding").is_none(), "{leaf}");
                redacted += 1;
            }
        }
    }
    // CLCRED and SRVCRED secrets, and the CLCRED nonce.
    assert_eq!(redacted, 3, "{auths}");
    let text = dmacc.to_string();
    for secret in [
        crate::helpers::CLIENT_SECRET,
        crate::helpers::SERVER_SECRET,
        NONCE,
    ] {
        assert!(!text.contains(secret));
    }

    // A leaf on its own.
    let (status, leaf) = json_of(
        app.get_query(
            "/api/v1/tree",
            &[("uri", &format!("./DMAcc/{node}/AppAuth/CLCRED/AAuthSecret"))],
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{leaf}");
    assert_eq!(leaf["redacted"], true);
    assert_eq!(leaf["value"], Value::Null);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn the_whole_tree_has_the_gateway_devinfo_and_the_inventory() {
    let app = spawn_app().await;
    app.announce("IMEI:77").await;
    let (status, root) = app.get_json("/api/v1/tree").await;
    assert_eq!(status, StatusCode::OK, "{root}");
    assert_eq!(root["name"], ".");
    assert_eq!(root["uri"], ".");
    let devinfo = child(&root, "DevInfo");
    assert_eq!(child(devinfo, "DevId")["value"], "urn:dmgw:test-gateway");
    let inventory = child(&root, "DeviceInventory");
    assert_eq!(inventory["children"].as_array().unwrap().len(), 1);
    let (status, same) = json_of(app.get_query("/api/v1/tree", &[("uri", ".")]).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(same, root);
    app.stop().await.unwrap();
}

#[actix_web::test]
async fn bad_uris_are_400_and_missing_nodes_404() {
    let app = spawn_app().await;
    for uri in [
        "DMAcc",
        "",
        "./DMAcc//X",
        "./DMAcc/../DevInfo",
        "./DMAcc?list=Struct",
        "./a\u{1}b",
        &format!("./{}", "a".repeat(300)),
        &format!("./{}", ["a"; 40].join("/")),
    ] {
        let (status, body) = json_of(app.get_query("/api/v1/tree", &[("uri", uri)]).await).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri:?}: {body}");
        assert_eq!(body["field"], "uri", "{body}");
    }
    let (status, body) = json_of(
        app.get_query("/api/v1/tree", &[("uri", "./DMAcc/Nope")])
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "node \"./DMAcc/Nope\" not found");
    app.stop().await.unwrap();
}
