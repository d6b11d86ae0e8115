//! The dashboard: what the balancer sees now (streams, servers, mounts)
//! and a listener chart per stream (1 h, 24 h or 7 d, stacked per relay),
//! drawn as SVG so the admin needs no JavaScript. `live` serves the same
//! numbers for in-place updates.

use std::fmt::Write as _;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::chart::{self, Range, Series};
use super::widgets::{CsrfForm, ServerLine, or_unlimited, server_lines};
use super::{AdminUser, Ctx, redirect_with_flash, redirect_with_problem};
use crate::error::Result;
use crate::routing::select::{self, Excluded};
use crate::routing::snapshot::StreamEntry;
use crate::routing::{Routing, Snapshot};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/", get(page))
        .route("/admin/poll", post(poll_now))
}

pub struct StreamCard {
    pub id: i64,
    pub name: String,
    pub listeners: u64,
    pub capacity: String,
    pub free: String,
    pub reserved: u64,
    /// The SVG chart and its HTML legend, escaped where needed.
    pub chart: String,
}

pub struct MountRow {
    pub id: i64,
    pub stream: String,
    pub server: String,
    pub mount: String,
    pub status: String,
    pub listeners: String,
    pub max: String,
    pub free: String,
    pub reserved: u64,
}

/// What the dashboard shows, for the page and for its live updates.
pub struct Dashboard {
    pub streams: Vec<StreamCard>,
    pub servers: Vec<ServerLine>,
    pub mounts: Vec<MountRow>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/dashboard.html")]
struct Page {
    ctx: Ctx,
    range: Range,
    ranges: [Range; 3],
    streams: Vec<StreamCard>,
    servers: Vec<ServerLine>,
    mounts: Vec<MountRow>,
    cluster: Option<ClusterBox>,
}

/// The cluster as the dashboard shows it (with `--cluster`).
struct ClusterBox {
    instance: String,
    /// "shared" or "split".
    slots: &'static str,
    detail: String,
    /// (name, last contact, present)
    members: Vec<(String, String, bool)>,
}

fn cluster_box(state: &AppState) -> Option<ClusterBox> {
    let st = state.cluster()?.status();
    let detail = match (st.mode, st.since_ms) {
        ("shared", _) => format!("Redis answered {}", super::ago(st.last_contact_ms)),
        (mode, since) => format!(
            "{mode} since {}; Redis last answered {}{}",
            super::ago(since),
            super::ago(st.last_contact_ms),
            st.last_error.map(|e| format!(" ({e})")).unwrap_or_default()
        ),
    };
    Some(ClusterBox {
        instance: st.instance,
        slots: st.slots,
        detail,
        members: st
            .members
            .into_iter()
            .map(|m| (m.name, super::ago(Some(m.last_contact_ms)), m.present))
            .collect(),
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    pub range: Option<String>,
}

/// Shown for a mount whose relay is down, never polled, or did not list
/// it: its last numbers say nothing about now.
const UNKNOWN: &str = "—";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of one stream with its legend (relay, colour, listeners now).
pub fn chart_html(series: &[Series], range: Range, now_ms: i64, title: &str) -> String {
    let mut html = chart::svg(series, range, now_ms, title);
    if !series.is_empty() {
        html.push_str("<ul class=\"legend\">");
        for l in chart::legend(series) {
            let _ = write!(
                html,
                "<li><span class=\"swatch\" style=\"background:{}\"></span>{} <strong>{}</strong></li>",
                l.colour,
                escape(&l.name),
                l.current
            );
        }
        html.push_str("</ul>");
    }
    html
}

async fn stream_series(
    conn: &mut sqlx::SqliteConnection,
    snap: &Snapshot,
    stream_id: i64,
    range: Range,
    now_ms: i64,
) -> Result<Vec<Series>> {
    let points = crate::store::status::stream_history_by_server(
        conn,
        stream_id,
        now_ms - range.span_ms(),
        range.bucket_ms(),
    )
    .await?;
    let mut series: Vec<(i64, Series)> = Vec::new();
    for p in points {
        match series.last_mut() {
            Some((id, s)) if *id == p.server_id => s.points.push((p.at, p.listeners)),
            _ => {
                let name = snap
                    .servers
                    .iter()
                    .find(|s| s.id == p.server_id)
                    .map_or_else(|| format!("server {}", p.server_id), |s| s.name.clone());
                series.push((
                    p.server_id,
                    Series {
                        name,
                        points: vec![(p.at, p.listeners)],
                    },
                ));
            }
        }
    }
    let mut series: Vec<Series> = series.into_iter().map(|(_, s)| s).collect();
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series)
}

fn mount_rows(snap: &Snapshot, st: &StreamEntry, now_s: u64, ttl: u64) -> Vec<MountRow> {
    let ranked = select::survey(snap, st, now_s, ttl);
    // Mounts in the stream's order; `survey` has assessed each of them
    // (looked up by index: a scan per mount was O(mounts²)).
    let assessed: std::collections::HashMap<usize, &select::Assessed> =
        ranked.iter().map(|a| (a.mount, a)).collect();
    st.mounts
        .iter()
        .filter_map(|&i| {
            let a = *assessed.get(&i)?;
            let m = &snap.mounts[i];
            let known = !matches!(a.excluded, Some(Excluded::Down | Excluded::NotListed));
            let shown = |v: String| if known { v } else { UNKNOWN.into() };
            Some(MountRow {
                id: m.id,
                stream: st.name.clone(),
                server: snap.servers[m.server].name.clone(),
                mount: m.path.clone(),
                status: a
                    .excluded
                    .map_or("candidate".into(), |e| e.reason().to_string()),
                listeners: shown(m.listeners.to_string()),
                max: shown(or_unlimited(m.max)),
                free: shown(or_unlimited(a.free)),
                reserved: a.reserved,
            })
        })
        .collect()
}

/// Everything the dashboard shows now; charts only when `charts` is set
/// (they cost a history query per stream).
pub async fn build(state: &AppState, range: Range, charts: bool) -> Result<Dashboard> {
    let Routing {
        snap,
        now_s,
        ttl_s: ttl,
    } = state.routing();
    let now = state.clock().now_ms();
    let mut conn = state.db().acquire().await?;
    let mut streams = Vec::new();
    let mut mounts = Vec::new();
    for st in &snap.streams {
        mounts.extend(mount_rows(&snap, st, now_s, ttl));
        let t = select::stream_totals(&snap, st, now_s, ttl);
        let chart = if charts {
            let series = stream_series(&mut conn, &snap, st.id, range, now).await?;
            chart_html(&series, range, now, &st.name)
        } else {
            String::new()
        };
        streams.push(StreamCard {
            id: st.id,
            name: st.name.clone(),
            listeners: t.listeners,
            capacity: or_unlimited(t.capacity),
            free: or_unlimited(t.free),
            reserved: t.reserved,
            chart,
        });
    }
    Ok(Dashboard {
        streams,
        servers: server_lines(state),
        mounts,
    })
}

async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<RangeQuery>,
) -> Result<impl IntoResponse> {
    let range = Range::parse(q.range.as_deref());
    let d = build(&state, range, true).await?;
    Ok(Page {
        ctx,
        range,
        ranges: Range::ALL,
        streams: d.streams,
        servers: d.servers,
        mounts: d.mounts,
        cluster: cluster_box(&state),
    })
}

async fn poll_now(
    State(state): State<AppState>,
    user: AdminUser,
    Form(f): Form<CsrfForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let summary = state.poll_now().await?;
    let failed = summary.failed();
    let servers = super::count(summary.servers.len(), "server");
    if failed == 0 {
        let msg = format!("Polled {servers} in {} ms.", summary.duration_ms);
        return Ok(redirect_with_flash("/admin/", &msg));
    }
    let msg = format!(
        "Polled {servers} in {} ms; {failed} failed: {}.",
        summary.duration_ms,
        summary
            .servers
            .iter()
            .filter(|s| !s.ok)
            .map(|s| format!("{} ({})", s.name, s.error.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(redirect_with_problem("/admin/", &msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_names_each_relay_escaped() {
        let series = vec![Series {
            name: "a<b".into(),
            points: vec![(1_000, 4)],
        }];
        let html = chart_html(&series, Range::Hour, 60_000, "live");
        assert!(html.starts_with("<svg"));
        assert!(html.contains("a&lt;b <strong>4</strong>"));
        assert!(!chart_html(&[], Range::Hour, 60_000, "live").contains("legend"));
    }
}
