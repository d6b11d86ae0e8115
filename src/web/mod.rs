//! HTTP: each module owns its routes; this assembles them with the
//! cross-cutting layers (static files, tracing, body limit).

pub mod admin;
pub(crate) mod api;
pub(crate) mod api_v1;
pub(crate) mod balancer;
pub(crate) mod client_ip;
pub(crate) mod csrf;
pub(crate) mod metrics;
pub(crate) mod pages;
pub(crate) mod relay_auth;
pub(crate) mod serve;
pub(crate) mod session;
pub(crate) mod shared;
pub(crate) mod state;
pub(crate) mod stream_list;
pub(crate) mod workers;

pub use state::AppState;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

/// The stylesheet is compiled in: the admin works offline and from any
/// working directory.
const STYLE: &str = include_str!("../../static/style.css");
/// Live updates for admin pages; they work without it.
const LIVE_JS: &str = include_str!("../../static/live.js");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
}

async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

async fn live_js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", LIVE_JS)
}

/// A limit or a free-slot count for display. `None` is no limit anybody
/// knows of (a relay read through status-json.xsl reports none), which
/// selection does not treat as unlimited: it shares listeners out evenly.
pub(crate) fn or_unlimited<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "no known limit".into(), |v| v.to_string())
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(admin::router(state.clone()))
        .merge(api::router())
        .merge(api_v1::router())
        .merge(metrics::router())
        .merge(pages::router())
        .route("/static/style.css", get(style))
        .route("/static/live.js", get(live_js))
        // Request spans cost a measurable share of a redirect's time, so
        // the listener routes (added after this layer) log for themselves.
        // Errors a browser reads become pages; players and scripts keep
        // the plain text (and the listener routes, added below, are not
        // wrapped at all).
        .layer(axum::middleware::from_fn(pages::error_pages))
        .layer(TraceLayer::new_for_http())
        .merge(api::probes())
        .merge(balancer::router())
        .merge(relay_auth::router())
        .fallback(pages::fallback)
        .layer(RequestBodyLimitLayer::new(1024 * 1024))
        .with_state(state)
}
