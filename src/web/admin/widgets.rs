//! Pieces several admin pages show: the servers table, the delete
//! confirmation, the CSRF-only form, and how limits read.

use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;

use super::{Ctx, ago};
use crate::domain::LocationSource;
use crate::routing::condition::{self, Condition};
use crate::routing::snapshot::ServerEntry;
use crate::web::AppState;

pub(crate) use crate::web::or_unlimited;

/// Shown where a number is not known now (a relay down, never polled, or
/// a mount its relay did not list): its last value says nothing about now.
pub const UNKNOWN: &str = "—";

pub struct ServerLine {
    pub id: i64,
    pub name: String,
    pub url: String,
    /// Full, low, down, draining, ok… (see [`Condition`]).
    pub condition: Condition,
    pub listeners: String,
    pub last_poll: String,
    pub latency: String,
    pub error: String,
    pub location: String,
    /// `load.xsl`, `status-json.xsl`, or empty before the first good poll.
    pub read_via: String,
    /// With `max_mbps`: `0.9 / 1 Mbit/s` (listeners and reservations at
    /// their streams' bitrates); empty without a budget.
    pub bandwidth: String,
}

impl ServerLine {
    /// The relay answered through status-json.xsl because load.xsl is
    /// missing (404): worth telling the operator to install it.
    pub fn lacks_load_xsl(&self) -> bool {
        self.read_via == crate::domain::PollSource::StatusJson.file()
    }
}

fn source(s: LocationSource) -> &'static str {
    match s {
        LocationSource::Configured => "configured",
        LocationSource::GeoIp => "GeoIP",
        LocationSource::Unknown => "unknown",
    }
}

/// Where the relay is placed for proximity, and whether that was typed in
/// or looked up, as the snapshot (and so the redirect path) sees it.
pub fn location_text(s: &ServerEntry) -> String {
    match (s.country, s.coords) {
        (c, Some(xy)) => format!(
            "{}{:.2}, {:.2} ({})",
            c.map(|c| format!("{c} · ")).unwrap_or_default(),
            xy.lat,
            xy.lon,
            source(s.coords_source)
        ),
        (Some(c), None) => format!("{c} ({})", source(s.country_source)),
        (None, None) => "unknown".into(),
    }
}

pub fn server_lines(state: &AppState) -> Vec<ServerLine> {
    let r = state.routing();
    let low = state.settings().alerts.free_percent;
    r.snap
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| ServerLine {
            id: s.id,
            name: s.name.clone(),
            url: s.url.clone(),
            condition: condition::server(&r, i, low),
            // A down relay's last count says nothing about now.
            listeners: if s.health.is_up() {
                s.listeners.to_string()
            } else {
                UNKNOWN.into()
            },
            last_poll: ago(s.last_poll_at),
            // A relay that did not answer has no latency worth showing.
            latency: s
                .latency_ms
                .filter(|_| s.health.is_up())
                .map(|l| format!("{l} ms"))
                .unwrap_or_else(|| UNKNOWN.into()),
            error: s
                .last_error
                .as_ref()
                .map(|e| format!("{e} ({})", ago(s.last_error_at)))
                .unwrap_or_default(),
            location: location_text(s),
            read_via: s.source.clone().unwrap_or_default(),
            bandwidth: s.bandwidth.as_ref().map_or_else(String::new, |bw| {
                let seen = s.last_success_at.unwrap_or(i64::MIN);
                let used = bw.used_kbps(r.now_s, r.ttl_s, seen) as f64 / 1000.0;
                format!("{used:.1} / {} Mbit/s", bw.budget_kbps as f64 / 1000.0)
            }),
        })
        .collect()
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/confirm_delete.html")]
pub struct ConfirmPage {
    pub ctx: Ctx,
    pub kind: &'static str,
    pub name: String,
    pub action: String,
    pub cancel: String,
    pub goes_with: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CsrfForm {
    pub csrf_token: String,
}
