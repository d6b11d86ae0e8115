//! The dashboard: what the balancer sees now (streams, servers, mounts)
//! and a 24-hour listener chart per stream, drawn here as SVG so the admin
//! needs no JavaScript.

use std::fmt::Write as _;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::widgets::{CsrfForm, ServerLine, or_unlimited, server_lines};
use super::{AdminUser, Ctx, redirect_with_flash, redirect_with_problem};
use crate::error::Result;
use crate::routing::Routing;
use crate::routing::select;
use crate::store;
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
    pub chart: String,
}

pub struct MountRow {
    pub stream: String,
    pub server: String,
    pub mount: String,
    pub status: String,
    pub listeners: u32,
    pub max: String,
    pub free: String,
    pub reserved: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/dashboard.html")]
struct Page {
    ctx: Ctx,
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

const DAY_MS: i64 = 24 * 3600 * 1000;
const BUCKET_MS: i64 = 5 * 60 * 1000;

/// A line chart of `points` (time ms, listeners) over the last 24 hours.
/// Built from numbers only, so it is safe to embed unescaped.
pub fn chart(points: &[(i64, i64)], now_ms: i64) -> String {
    let (w, h, left, bottom) = (600.0, 140.0, 40.0, 20.0);
    let max = points.iter().map(|p| p.1).max().unwrap_or(0).max(1) as f64;
    let start = now_ms - DAY_MS;
    let x = |t: i64| left + (t - start).clamp(0, DAY_MS) as f64 / DAY_MS as f64 * (w - left - 10.0);
    let y = |v: i64| 10.0 + (1.0 - v as f64 / max) * (h - bottom - 10.0);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"listeners over the last 24 hours, peak {max}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#b9c1ca\"/>\
         <line x1=\"{left}\" y1=\"10\" x2=\"{left}\" y2=\"{b}\" stroke=\"#b9c1ca\"/>\
         <text x=\"{tx}\" y=\"16\" font-size=\"11\" text-anchor=\"end\" fill=\"#5c6670\">{max}</text>\
         <text x=\"{tx}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5c6670\">0</text>\
         <text x=\"{left}\" y=\"{lb}\" font-size=\"11\" fill=\"#5c6670\">−24 h</text>\
         <text x=\"{mid}\" y=\"{lb}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#5c6670\">−12 h</text>\
         <text x=\"{r}\" y=\"{lb}\" font-size=\"11\" text-anchor=\"end\" fill=\"#5c6670\">now</text>",
        b = h - bottom,
        r = w - 10.0,
        tx = left - 4.0,
        lb = h - 4.0,
        mid = left + (w - left - 10.0) / 2.0,
        max = max as i64,
    );
    if points.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#5c6670\">no samples yet</text>",
            w / 2.0,
            h / 2.0
        );
    } else {
        let coords: Vec<String> = points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        // A light area under the line makes the shape readable at a glance.
        let (first, last) = (points[0], points[points.len() - 1]);
        let _ = write!(
            svg,
            "<polygon fill=\"#0b63b6\" fill-opacity=\"0.12\" points=\"{:.1},{b:.1} {} {:.1},{b:.1}\"/>\
             <polyline fill=\"none\" stroke=\"#0b63b6\" stroke-width=\"2\" points=\"{}\"/>",
            x(first.0),
            coords.join(" "),
            x(last.0),
            coords.join(" "),
            b = h - bottom,
        );
        // The latest sample as a dot, so even a single poll shows up.
        if let Some(&(t, v)) = points.last() {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"#0b63b6\"/>",
                x(t),
                y(v)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

async fn page(State(state): State<AppState>, ctx: Ctx) -> Result<impl IntoResponse> {
    let Routing {
        snap,
        now_s,
        ttl_s: ttl,
    } = state.routing();
    let now = store::now_ms();
    let mut conn = state.db().acquire().await?;
    let mut streams = Vec::new();
    let mut mounts = Vec::new();
    for st in &snap.streams {
        // ThreadRng is not Send: keep it out of the awaits below.
        let ranked = select::rank(&snap, st, &Default::default(), now_s, ttl, &mut rand::rng());
        // Mounts in the stream's order; `rank` has assessed each of them.
        for &i in &st.mounts {
            let Some(a) = ranked.iter().find(|a| a.mount == i) else {
                continue;
            };
            let m = &snap.mounts[i];
            mounts.push(MountRow {
                stream: st.name.clone(),
                server: snap.servers[m.server].name.clone(),
                mount: m.path.clone(),
                status: a
                    .excluded
                    .map_or("candidate".into(), |e| e.reason().to_string()),
                listeners: m.listeners,
                max: or_unlimited(m.max),
                free: or_unlimited(a.free),
                reserved: a.reserved,
            });
        }
        let t = select::stream_totals(&snap, st, now_s, ttl);
        let history =
            store::status::stream_history(&mut conn, st.id, now - DAY_MS, BUCKET_MS).await?;
        let points: Vec<(i64, i64)> = history.iter().map(|p| (p.at, p.listeners)).collect();
        streams.push(StreamCard {
            id: st.id,
            name: st.name.clone(),
            listeners: t.listeners,
            capacity: or_unlimited(t.capacity),
            free: or_unlimited(t.free),
            reserved: t.reserved,
            chart: chart(&points, now),
        });
    }
    Ok(Page {
        ctx,
        streams,
        servers: server_lines(&state),
        mounts,
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
    use super::chart;

    #[test]
    fn chart_scales_to_the_peak() {
        let now = 100 * super::DAY_MS;
        let svg = chart(&[(now - super::DAY_MS, 0), (now, 40)], now);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("peak 40"));
        assert!(svg.contains("<polyline"));
        // One sample still leaves a visible mark.
        assert!(chart(&[(now, 3)], now).contains("<circle"));
        assert!(chart(&[], now).contains("no samples yet"));
    }
}
