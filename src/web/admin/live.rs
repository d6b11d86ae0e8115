//! `GET /admin/live`: the numbers of the dashboard, servers and stream
//! pages as JSON, for `static/live.js` to update those pages in place
//! every few seconds. Each value is keyed by the `data-live` attribute of
//! the element that shows it (`stream-3-listeners`, `server-1-state`,
//! `mount-7-free`, `chart-3`), already formatted as the page formats it,
//! so the script only copies text.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::chart::Range;
use super::dashboard::{self, Dashboard};
use super::{AdminUser, when};
use crate::error::Result;
use crate::routing::condition::Condition;
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/live", get(live))
}

#[derive(Debug, Default, Deserialize)]
pub struct LiveQuery {
    pub range: Option<String>,
    /// `1` to include the charts (the dashboard); other pages skip them.
    pub charts: Option<String>,
}

#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Live {
    /// Element text by key.
    pub text: BTreeMap<String, String>,
    /// The `state-…` class an element should carry, by key.
    pub class: BTreeMap<String, String>,
    /// Markup we generated (charts), by key.
    pub html: BTreeMap<String, String>,
    pub updated: String,
}

impl Live {
    fn put(&mut self, key: String, value: impl ToString) {
        self.text.insert(key, value.to_string());
    }
}

/// The class that colours a state word (`state-full`, `state-ok`…).
pub fn state_class(c: Condition) -> String {
    format!("state-{}", c.as_str())
}

/// The flat key → value view of what the pages show.
pub fn flatten(d: &Dashboard, mount_live: &[(i64, bool)]) -> Live {
    let mut l = Live::default();
    for s in &d.streams {
        let k = |f: &str| format!("stream-{}-{f}", s.id);
        l.put(k("listeners"), s.listeners);
        l.put(k("capacity"), &s.capacity);
        l.put(k("free"), &s.free);
        l.put(k("reserved"), s.reserved);
        l.put(k("state"), s.condition.words());
        l.class.insert(k("state"), state_class(s.condition));
        l.put(k("turned_away"), &s.turned_away);
        let marked = if s.turning_away {
            "state-full"
        } else {
            "state-none"
        };
        l.class.insert(k("turned_away"), marked.into());
        l.put(k("headroom"), &s.headroom);
        if !s.chart.is_empty() {
            l.html.insert(format!("chart-{}", s.id), s.chart.clone());
        }
    }
    for s in &d.servers {
        let k = |f: &str| format!("server-{}-{f}", s.id);
        l.put(k("state"), s.condition.words());
        l.class.insert(k("state"), state_class(s.condition));
        l.put(k("listeners"), &s.listeners);
        l.put(k("last_poll"), &s.last_poll);
        l.put(k("latency"), &s.latency);
        l.put(k("error"), &s.error);
        l.put(k("read_via"), &s.read_via);
    }
    for m in &d.mounts {
        let k = |f: &str| format!("mount-{}-{f}", m.id);
        l.put(k("listeners"), &m.listeners);
        l.put(k("max"), &m.max);
        l.put(k("free"), &m.free);
        l.put(k("reserved"), m.reserved);
        l.put(k("status"), m.condition.words());
        l.class.insert(k("status"), state_class(m.condition));
    }
    for &(id, live) in mount_live {
        let key = format!("mount-{id}-live");
        l.put(key.clone(), if live { "live" } else { "not live" });
        let class = if live { "state-up" } else { "state-down" };
        l.class.insert(key, class.into());
    }
    l
}

async fn live(
    State(state): State<AppState>,
    _user: AdminUser,
    Query(q): Query<LiveQuery>,
) -> Result<impl IntoResponse> {
    let range = Range::parse(q.range.as_deref());
    let charts = q.charts.as_deref() == Some("1");
    let d = dashboard::build(&state, range, charts).await?;
    let mount_live: Vec<(i64, bool)> = state
        .snapshot()
        .mounts
        .iter()
        .map(|m| (m.id, m.live))
        .collect();
    let mut body = flatten(&d, &mount_live);
    body.updated = when(state.clock().now_ms());
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)))
}
