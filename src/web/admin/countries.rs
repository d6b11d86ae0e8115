//! Where listeners come from: redirects per stream and client country
//! (hourly in the store), as a table, a bar chart and a CSV export.

use std::fmt::Write as _;

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::Ctx;
use crate::error::{Error, Result};
use crate::store;
use crate::store::countries::{CountryTotal, HOUR_MS};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/countries", get(page))
        .route("/admin/countries.csv", get(csv))
}

pub const PERIODS: [i64; 4] = [1, 7, 30, 365];

#[derive(Debug, Default, Deserialize)]
pub struct CountryQuery {
    pub stream: Option<String>,
    pub days: Option<i64>,
}

impl CountryQuery {
    fn days(&self) -> i64 {
        self.days.filter(|d| PERIODS.contains(d)).unwrap_or(7)
    }
}

pub struct Line {
    pub country: String,
    pub redirects: i64,
    pub share: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/countries.html")]
struct Page {
    ctx: Ctx,
    streams: Vec<String>,
    stream: String,
    days: i64,
    periods: [i64; 4],
    total: i64,
    lines: Vec<Line>,
    chart: String,
}

fn label(country: &str) -> &str {
    if country.is_empty() {
        "unknown"
    } else {
        country
    }
}

/// Horizontal bars of the top countries; numbers and codes only, so safe
/// to embed.
pub fn bars(totals: &[CountryTotal]) -> String {
    let top: Vec<&CountryTotal> = totals.iter().take(12).collect();
    let max = top.iter().map(|t| t.redirects).max().unwrap_or(0).max(1) as f64;
    let (w, row, left, right) = (420.0, 24.0, 74.0, 64.0);
    let h = row * top.len().max(1) as f64 + 8.0;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" \
         aria-label=\"redirects by country, top {}\">",
        top.len()
    );
    if top.is_empty() {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"20\" font-size=\"13\" fill=\"#4a535c\" text-anchor=\"middle\">no redirects counted yet</text>",
            w / 2.0
        );
    }
    for (i, t) in top.iter().enumerate() {
        let y = 4.0 + row * i as f64;
        let bw = (t.redirects as f64 / max * (w - left - right)).max(1.0);
        let c = label(&t.country)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>();
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" fill=\"#1d232a\" text-anchor=\"end\">{c}</text>\
             <rect x=\"{left}\" y=\"{:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"#0072b2\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" fill=\"#1d232a\">{}</text>",
            left - 6.0,
            y + 16.0,
            y + 3.0,
            row - 6.0,
            left + bw + 5.0,
            y + 16.0,
            t.redirects
        );
    }
    svg.push_str("</svg>");
    svg
}

async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<CountryQuery>,
) -> Result<Response> {
    // What was counted since the last background flush shows at once.
    state.flush_country_counts().await?;
    let days = q.days();
    let snap = state.snapshot();
    let streams: Vec<String> = snap.streams.iter().map(|s| s.name.clone()).collect();
    let chosen = match q.stream.as_deref() {
        Some(n) => Some(
            snap.stream(n)
                .ok_or_else(|| Error::NotFound(format!("No stream named {n:?}.")))?,
        ),
        None => snap.streams.first(),
    };
    let mut totals = Vec::new();
    if let Some(st) = chosen {
        let mut conn = state.db().acquire().await?;
        let since = store::countries::hour_of(state.clock().now_ms()) - (days * 24 - 1) * HOUR_MS;
        totals = store::countries::totals(&mut conn, st.id, since).await?;
    }
    let total: i64 = totals.iter().map(|t| t.redirects).sum();
    let lines = totals
        .iter()
        .map(|t| Line {
            country: label(&t.country).to_string(),
            redirects: t.redirects,
            share: format!("{:.1} %", t.redirects as f64 * 100.0 / total.max(1) as f64),
        })
        .collect();
    Ok(Page {
        ctx,
        streams,
        stream: chosen.map(|s| s.name.clone()).unwrap_or_default(),
        days,
        periods: PERIODS,
        total,
        lines,
        chart: bars(&totals),
    }
    .into_response())
}

fn iso_hour(ms: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:00:00Z");
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// One row per stream, hour and country; a stream named in the query
/// narrows it to that stream. Names are slugs and codes letters, so no
/// field needs quoting.
async fn csv(State(state): State<AppState>, Query(q): Query<CountryQuery>) -> Result<Response> {
    state.flush_country_counts().await?;
    let days = q.days();
    let stream = match q.stream.as_deref().filter(|s| !s.is_empty()) {
        Some(n) => Some(
            state
                .snapshot()
                .stream(n)
                .map(|s| (s.id, s.name.clone()))
                .ok_or_else(|| Error::NotFound(format!("No stream named {n:?}.")))?,
        ),
        None => None,
    };
    let since = store::countries::hour_of(state.clock().now_ms()) - (days * 24 - 1) * HOUR_MS;
    let mut conn = state.db().acquire().await?;
    let rows = store::countries::hourly(&mut conn, stream.as_ref().map(|s| s.0), since).await?;
    let mut body = String::from("hour_utc,stream,country,redirects\n");
    for r in rows {
        let _ = writeln!(
            body,
            "{},{},{},{}",
            iso_hour(r.hour),
            r.stream,
            r.country,
            r.redirects
        );
    }
    let name = stream.map_or_else(|| "all".to_string(), |s| s.1);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"redirects-by-country-{name}-{days}d.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_show_codes_and_counts() {
        let t = |c: &str, n| CountryTotal {
            country: c.into(),
            redirects: n,
        };
        let svg = bars(&[t("DE", 30), t("", 5)]);
        assert!(svg.contains(">DE</text>") && svg.contains(">30</text>"));
        assert!(svg.contains(">unknown</text>"));
        assert!(bars(&[]).contains("no redirects counted yet"));
        assert_eq!(iso_hour(3_600_000), "1970-01-01T01:00:00Z");
    }
}
