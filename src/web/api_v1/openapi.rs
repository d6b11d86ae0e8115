//! The OpenAPI 3.1 description of `/api/v1`, derived at build time from
//! the handlers' annotations and their request and response types, so it
//! cannot drift from what the handlers accept and answer.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{announce, config, mounts, servers, streams, users};
use crate::web::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "icecast-balancer automation API",
        version = "1",
        description = "Configuration of servers, streams, mounts and users, and relays that \
                       register themselves. Bearer tokens (scopes read, write, announce); \
                       ETag / If-Match on every object (PUT and DELETE need If-Match: 428 \
                       without, 412 when stale)."
    ),
    paths(
        servers::list, servers::read, servers::create, servers::update, servers::remove,
        streams::list, streams::read, streams::create, streams::update, streams::remove,
        mounts::list, mounts::read, mounts::create, mounts::update, mounts::remove,
        users::list, users::read, users::create, users::update, users::remove,
        config::read, config::replace,
        announce::announce,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as served.
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOC.get_or_init(json).clone(),
    )
}
