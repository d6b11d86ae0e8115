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
use super::widgets::{CsrfForm, ServerLine, UNKNOWN, or_unlimited, server_lines};
use super::{AdminUser, Ctx, redirect_with_flash, redirect_with_problem};
use crate::error::Result;
use crate::routing::Snapshot;
use crate::routing::condition::{self, Condition};
use crate::routing::select::{self, Excluded};
use crate::routing::snapshot::StreamEntry;
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/", get(page))
        .route("/admin/poll", post(poll_now))
}

pub struct StreamCard {
    pub id: i64,
    pub name: String,
    pub condition: Condition,
    pub listeners: u64,
    pub capacity: String,
    pub free: String,
    pub reserved: u64,
    /// Listeners answered 503 or sent to the fallback, last minute and hour.
    pub turned_away: String,
    /// Whether anyone was turned away in the last hour (the line is marked).
    pub turning_away: bool,
    /// What losing the busiest relay would do; empty with no listeners.
    pub headroom: String,
    /// The SVG chart and its HTML legend, escaped where needed.
    pub chart: String,
}

pub struct MountRow {
    pub id: i64,
    pub stream: String,
    pub server: String,
    pub mount: String,
    pub condition: Condition,
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

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of one stream with its legend (relay, colour, listeners now).
pub fn chart_html(
    series: &[Series],
    range: Range,
    now_ms: i64,
    title: &str,
    capacity: Option<u64>,
) -> String {
    let mut html = chart::svg(series, range, now_ms, title, capacity);
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

/// Each relay's history of the stream, ending with its listeners now
/// (`now`, from [`condition::listeners_by_server`]); a relay with
/// listeners but no history yet gets a series of its own.
async fn stream_series(
    conn: &mut sqlx::SqliteConnection,
    snap: &Snapshot,
    stream_id: i64,
    range: Range,
    now_ms: i64,
    now: &[(usize, u64)],
) -> Result<Vec<Series>> {
    let points = crate::store::status::stream_history_by_server(
        conn,
        stream_id,
        now_ms - range.span_ms(),
        range.bucket_ms(),
    )
    .await?;
    let mut by_id: Vec<(i64, Vec<(i64, i64)>)> = Vec::new();
    for p in points {
        match by_id.last_mut() {
            Some((id, pts)) if *id == p.server_id => pts.push((p.at, p.listeners)),
            _ => by_id.push((p.server_id, vec![(p.at, p.listeners)])),
        }
    }
    for &(idx, _) in now {
        let id = snap.servers[idx].id;
        if !by_id.iter().any(|(i, _)| *i == id) {
            by_id.push((id, Vec::new()));
        }
    }
    let mut series: Vec<Series> = by_id
        .into_iter()
        .map(|(id, points)| {
            let idx = snap.servers.iter().position(|s| s.id == id);
            let listeners = now
                .iter()
                .find(|(i, _)| Some(*i) == idx)
                .map_or(0, |(_, n)| *n);
            Series {
                name: idx.map_or_else(|| format!("server {id}"), |i| snap.servers[i].name.clone()),
                points,
                now: i64::try_from(listeners).unwrap_or(i64::MAX),
            }
        })
        .collect();
    series.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(series)
}

/// "none in the last hour", or the 503s and fallbacks of the last minute
/// and hour.
fn turned_away(st: &StreamEntry, now_s: u64) -> (String, bool) {
    let c = &st.counters;
    let (refused_m, refused_h) = (
        c.recent_refused.last_minute(now_s),
        c.recent_refused.last_hour(now_s),
    );
    let (fallback_m, fallback_h) = (
        c.recent_fallback.last_minute(now_s),
        c.recent_fallback.last_hour(now_s),
    );
    if refused_h + fallback_h == 0 {
        return ("none in the last hour".into(), false);
    }
    let mut parts = Vec::new();
    if refused_h > 0 {
        parts.push(format!(
            "{refused_m} in the last minute, {refused_h} in the last hour answered 503"
        ));
    }
    if fallback_h > 0 {
        parts.push(format!(
            "{fallback_m} in the last minute, {fallback_h} in the last hour sent to the fallback"
        ));
    }
    (parts.join("; "), true)
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
                condition: condition::mount(a.excluded, snap.servers[m.server].health.state),
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
    let r = state.routing();
    let low = state.settings().alerts.free_percent;
    let now = state.clock().now_ms();
    let mut conn = state.db().acquire().await?;
    let mut streams = Vec::new();
    let mut mounts = Vec::new();
    for st in &r.snap.streams {
        mounts.extend(mount_rows(&r.snap, st, r.now_s, r.ttl_s));
        let t = select::stream_totals(&r.snap, st, r.now_s, r.ttl_s);
        let by_server = condition::listeners_by_server(&r, st);
        let chart = if charts {
            let series = stream_series(&mut conn, &r.snap, st.id, range, now, &by_server).await?;
            chart_html(&series, range, now, &st.name, t.capacity)
        } else {
            String::new()
        };
        let (turned_away, turning_away) = turned_away(st, r.now_s);
        streams.push(StreamCard {
            id: st.id,
            name: st.name.clone(),
            condition: condition::stream(&t, low),
            listeners: by_server.iter().map(|(_, n)| n).sum(),
            capacity: or_unlimited(t.capacity),
            free: or_unlimited(t.free),
            reserved: t.reserved,
            turned_away,
            turning_away,
            headroom: condition::headroom(&r, st)
                .map(|h| h.sentence())
                .unwrap_or_default(),
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
            now: 4,
        }];
        let html = chart_html(&series, Range::Hour, 60_000, "live", None);
        assert!(html.starts_with("<svg"));
        assert!(html.contains("a&lt;b <strong>4</strong>"));
        assert!(!chart_html(&[], Range::Hour, 60_000, "live", None).contains("legend"));
    }
}
