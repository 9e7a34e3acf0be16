//! HTTP routes for function keys: create one (its secret answered once),
//! list them (never a secret), revoke one — each change through the
//! ledger, where only the function's owner or an admin counts.
//!
//! Owns those routes and drawing a key's secret (32 bytes from the
//! operating system, URL-safe base64); what the ledger keeps of a key and
//! who may change it is `protocol::function::keys`' and the core's. Like
//! every handler, these keep no state.

use crate::api::functions::change;
use crate::api::types::{CreateFunctionKey, FunctionKey, FunctionKeyCreated, FunctionKeyRevoked};
use crate::api::{node_name, ApiResult, ApiState};
use crate::driver::command::Functions;
use crate::wallclock::wall_ms;
use axum::extract::{Path, State};
use axum::Json;
use base64::Engine;
use peerbatch_protocol::function::keys::KeyHash;
use peerbatch_protocol::function::FunctionEvent;
use rand::RngCore;

/// The label of a key created without one.
const DEFAULT_LABEL: &str = "default";

/// A function's keys, revoked ones too, oldest first.
#[utoipa::path(get, path = "/v1/functions/{name}/keys", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    responses((status = 200, body = Vec<FunctionKey>)))]
pub async fn list(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<FunctionKey>>> {
    let view = (s.driver)
        .call(|reply| Functions::Show { name, reply })
        .await??;
    let keys = view.keys.all().iter().map(|k| FunctionKey {
        label: k.label.clone(),
        created_by: node_name(&k.created_by),
        created_ms: k.created_ms,
        revoked_ms: k.revoked_ms,
    });
    Ok(Json(keys.collect()))
}

/// Creates a key that opens the function on every node's functions
/// listener; answers its secret, which is shown only this once.
#[utoipa::path(post, path = "/v1/functions/{name}/keys", tag = "functions",
    params(("name" = String, Path, description = "the function")),
    request_body = CreateFunctionKey,
    responses((status = 200, body = FunctionKeyCreated)))]
pub async fn create(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    Json(body): Json<CreateFunctionKey>,
) -> ApiResult<Json<FunctionKeyCreated>> {
    let label = body.label.unwrap_or_else(|| DEFAULT_LABEL.to_string());
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let event = FunctionEvent::KeyCreated {
        name: name.clone(),
        label: label.clone(),
        hash: KeyHash::of(key.as_bytes()),
        at_ms: wall_ms(),
    };
    change(&s, event).await?;
    Ok(Json(FunctionKeyCreated { name, label, key }))
}

/// Revokes a function's key: it opens nothing on any node once the
/// revocation reaches it.
#[utoipa::path(delete, path = "/v1/functions/{name}/keys/{label}", tag = "functions",
    params(("name" = String, Path, description = "the function"),
        ("label" = String, Path, description = "the key's label")),
    responses((status = 200, body = FunctionKeyRevoked)))]
pub async fn revoke(
    State(s): State<ApiState>,
    Path((name, label)): Path<(String, String)>,
) -> ApiResult<Json<FunctionKeyRevoked>> {
    let event = FunctionEvent::KeyRevoked {
        name: name.clone(),
        label: label.clone(),
        at_ms: wall_ms(),
    };
    change(&s, event).await?;
    Ok(Json(FunctionKeyRevoked { name, label }))
}
