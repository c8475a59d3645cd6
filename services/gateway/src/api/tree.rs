//! `GET /api/v1/tree?uri=./DMAcc`: the gateway's management tree below a URI as nested JSON.
//! `AAuthSecret` and `AAuthData` values are never included: those leaves show `"redacted": true`.

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use omadm::tree::{Node, Tree};
use omadm::uri::{DEPTH_CEILING, DmUri, UriLimits};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, Fault, uri_error};
use crate::startup::gateway_devinfo;
use crate::state::AppState;

/// Leaves whose values the admin API never shows, whatever the tree's own "no Get" set says.
pub const REDACTED_LEAVES: [&str; 2] = ["AAuthSecret", "AAuthData"];

/// `GET /api/v1/tree` parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TreeQuery {
    /// The management-tree URI to show (`.` or `./A/B`); default `.`, the whole tree.
    #[param(example = "./DMAcc")]
    pub uri: Option<String>,
}

/// How a leaf's value is written in `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueEncoding {
    /// The value is the node's text.
    Text,
    /// The value is the node's bytes, base64 (formats `b64` and `bin`, or bytes not UTF-8).
    B64,
}

/// One node of the management tree. Interior nodes have `children`; leaves have `value`,
/// `encoding` and `redacted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TreeNode {
    /// The node name (`.` for the root).
    pub name: String,
    /// The node's full URI.
    pub uri: String,
    /// The DM Format: `node` for interior nodes, else `chr`, `int`, `bool`, `b64`, `bin`, ...
    pub format: String,
    /// The DM Type: a MIME type for a leaf, the MO identifier for an interior node.
    #[serde(rename = "type")]
    pub mime_type: Option<String>,
    /// A leaf's value (see `encoding`); null when the leaf has none or is redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub value: Option<Option<String>>,
    /// How `value` is written (leaves with a value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<ValueEncoding>,
    /// True for leaves whose value is a secret and is never shown (leaves only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redacted: Option<bool>,
    /// The children, in name order (interior nodes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub children: Option<Vec<TreeNode>>,
}

fn is_redacted(tree: &Tree, uri: &DmUri) -> bool {
    tree.is_no_get(uri) || uri.name().is_some_and(|n| REDACTED_LEAVES.contains(&n))
}

fn leaf_value(node: &Node) -> (Option<String>, Option<ValueEncoding>) {
    let Some(bytes) = node.value.as_deref() else {
        return (None, None);
    };
    match std::str::from_utf8(bytes) {
        Ok(text) if node.format.is_text() => (Some(text.to_owned()), Some(ValueEncoding::Text)),
        _ => (Some(B64.encode(bytes)), Some(ValueEncoding::B64)),
    }
}

/// The JSON view of the subtree of `tree` at `uri` (which holds `node`).
pub fn view(tree: &Tree, uri: &DmUri, node: &Node, depth: usize) -> Result<TreeNode, ApiError> {
    if depth > DEPTH_CEILING {
        return Err(ApiError::internal(
            "management tree",
            Fault("deeper than the URI depth ceiling"),
        ));
    }
    let name = uri.name().unwrap_or(".").to_owned();
    let mut out = TreeNode {
        name,
        uri: uri.as_str().to_owned(),
        format: node.format.as_str().to_owned(),
        mime_type: node.mime_type.clone(),
        value: None,
        encoding: None,
        redacted: None,
        children: None,
    };
    if node.is_leaf() {
        if is_redacted(tree, uri) {
            out.value = Some(None);
            out.redacted = Some(true);
        } else {
            let (value, encoding) = leaf_value(node);
            out.value = Some(value);
            out.encoding = encoding;
            out.redacted = Some(false);
        }
        return Ok(out);
    }
    let mut children = Vec::with_capacity(node.children.len());
    for (child_name, child) in &node.children {
        let child_uri = uri
            .join_with_limits(child_name, &tree.limits().uri)
            .map_err(|e| ApiError::internal("management tree", e))?;
        children.push(view(tree, &child_uri, child, depth.saturating_add(1))?);
    }
    out.children = Some(children);
    Ok(out)
}

/// The gateway's management tree below `uri`: `./DevInfo`, `./DMAcc/<X>` per account and
/// `./DeviceInventory/<X>` per device. Secret leaves (`AAuthSecret`, `AAuthData`) are redacted.
#[utoipa::path(
    get,
    path = "/api/v1/tree",
    tag = "tree",
    params(TreeQuery),
    responses(
        (status = 200, description = "the subtree", body = TreeNode),
        (status = 400, description = "not a management-tree URI", body = ErrorBody),
        (status = 401, description = "no or wrong bearer token", body = ErrorBody),
        (status = 404, description = "no node at this URI", body = ErrorBody),
    )
)]
pub async fn get_tree(
    state: web::Data<AppState>,
    q: web::Query<TreeQuery>,
) -> Result<HttpResponse, ApiError> {
    let uri = match q.uri.as_deref() {
        None => DmUri::root(),
        Some(text) => {
            DmUri::parse(text.trim(), &UriLimits::default()).map_err(|e| uri_error(&e))?
        }
    };
    let tree = state
        .store
        .management_tree(&gateway_devinfo(&state.settings))
        .await?;
    let node = tree.node(&uri)?;
    Ok(HttpResponse::Ok().json(view(&tree, &uri, node, 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use omadm::mo::{AppAuth, AuthLevel, AuthType, DmAcc};
    use omadm::secret::Secret;
    use omadm::tree::{Format, NewNode};

    #[test]
    fn secrets_are_redacted_and_bytes_encoded() {
        let mut tree = Tree::new();
        let mut acc = DmAcc::new("dms-1", "https://dms/dm");
        acc.app_auth = vec![AppAuth {
            key: "1".into(),
            level: AuthLevel::Clcred,
            auth_type: AuthType::Digest,
            name: Some("gw".into()),
            secret: Some(Secret::new("hunter2-very-secret")),
            data: Some(Secret::new("bm9uY2Utc2VjcmV0")),
        }];
        let at: DmUri = "./DMAcc/A".parse().unwrap();
        acc.write(&mut tree, &at).unwrap();
        tree.add(
            &"./Bin".parse().unwrap(),
            NewNode::leaf(Format::Bin, vec![0xff, 0x00]),
        )
        .unwrap();
        let root = DmUri::root();
        let v = view(&tree, &root, tree.node(&root).unwrap(), 0).unwrap();
        let json = serde_json::to_string(&v).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(!json.contains("bm9uY2Utc2VjcmV0"), "{json}");
        assert!(json.contains(r#""name":"AAuthSecret""#), "{json}");
        assert!(json.contains(r#""value":null,"redacted":true"#), "{json}");
        assert!(
            json.contains(r#""value":"/wA=","encoding":"b64""#),
            "{json}"
        );
        assert!(
            json.contains(r#""value":"dms-1","encoding":"text""#),
            "{json}"
        );
        assert_eq!(v.name, ".");
    }
}
