//! Listener charts as server-rendered SVG (no JavaScript needed): one
//! stacked area per relay, time and value axes, the current total marked.
//!
//! The drawing is small enough (420 units wide) that, scaled to a phone's
//! width, its 15-unit labels stay about 11 px high.

use std::fmt::Write as _;

/// The time spans an operator can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Range {
    Hour,
    #[default]
    Day,
    Week,
}

const MIN_MS: i64 = 60 * 1000;
const HOUR_MS: i64 = 60 * MIN_MS;

impl Range {
    pub const ALL: [Range; 3] = [Range::Hour, Range::Day, Range::Week];

    /// `?range=1h|24h|7d`; anything else is the default (24 h).
    pub fn parse(raw: Option<&str>) -> Range {
        match raw.map(str::trim) {
            Some("1h") => Range::Hour,
            Some("7d") => Range::Week,
            _ => Range::Day,
        }
    }
    pub fn param(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Range::Hour => "1 h",
            Range::Day => "24 h",
            Range::Week => "7 d",
        }
    }
    pub fn span_ms(self) -> i64 {
        match self {
            Range::Hour => HOUR_MS,
            Range::Day => 24 * HOUR_MS,
            Range::Week => 7 * 24 * HOUR_MS,
        }
    }
    /// Samples are grouped by this (each mount's peak per bucket).
    pub fn bucket_ms(self) -> i64 {
        match self {
            Range::Hour => MIN_MS,
            Range::Day => 10 * MIN_MS,
            Range::Week => HOUR_MS,
        }
    }
    fn tick_ms(self) -> i64 {
        match self {
            Range::Hour => 15 * MIN_MS,
            Range::Day => 6 * HOUR_MS,
            Range::Week => 24 * HOUR_MS,
        }
    }
}

/// One relay's listeners of a stream: (bucket start ms, listeners), by
/// time, and its listeners now (the last point drawn, the same number the
/// page's headline adds up, not the last bucket's peak).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, i64)>,
    pub now: i64,
}

/// Colour-blind-safe (Okabe–Ito), dark enough on white for 3:1 contrast.
const COLOURS: [&str; 6] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#7a5c00", "#56b4e9",
];

pub fn colour(i: usize) -> &'static str {
    COLOURS[i % COLOURS.len()]
}

/// The legend line of one relay, shown as HTML under the chart.
#[derive(Debug, Clone)]
pub struct Legend {
    pub name: String,
    pub colour: &'static str,
    pub current: i64,
}

pub fn legend(series: &[Series]) -> Vec<Legend> {
    series
        .iter()
        .enumerate()
        .map(|(i, s)| Legend {
            name: s.name.clone(),
            colour: colour(i),
            current: s.now,
        })
        .collect()
}

/// The stacked values at every bucket time any relay has a sample for.
/// A relay missing from a bucket keeps its last value for a short while
/// (polls and buckets do not line up), then counts as 0.
fn stack(series: &[Series], bucket_ms: i64) -> (Vec<i64>, Vec<Vec<i64>>) {
    let mut times: Vec<i64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    times.sort_unstable();
    times.dedup();
    let carry = (2 * bucket_ms).max(5 * MIN_MS);
    let mut tops = vec![vec![0i64; times.len()]; series.len()];
    let mut below = vec![0i64; times.len()];
    for (k, s) in series.iter().enumerate() {
        let mut last: Option<(i64, i64)> = None;
        let mut p = s.points.iter().peekable();
        for (j, &t) in times.iter().enumerate() {
            while let Some(&&(pt, v)) = p.peek() {
                if pt > t {
                    break;
                }
                last = Some((pt, v));
                p.next();
            }
            let v = match last {
                Some((pt, v)) if t - pt <= carry => v,
                _ => 0,
            };
            below[j] += v;
            tops[k][j] = below[j];
        }
    }
    (times, tops)
}

/// 1, 2, 5 × 10ⁿ at or above `v`, so axis labels are round numbers.
fn nice_ceiling(v: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            if step * m >= v {
                return step * m;
            }
        }
        step = step.saturating_mul(10);
    }
}

fn time_label(ms: i64, range: Range) -> String {
    let fmt_hm = time::macros::format_description!("[hour]:[minute]");
    let fmt_day = time::macros::format_description!("[month]-[day]");
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) else {
        return String::new();
    };
    let fmt = if range == Range::Week {
        fmt_day
    } else {
        fmt_hm
    };
    t.format(&fmt).unwrap_or_default()
}

/// Escapes text for SVG markup (relay names end up in <title>).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 420.0;
const H: f64 = 210.0;
const LEFT: f64 = 46.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 38.0;
const LABEL: &str = "font-size=\"15\" fill=\"#4a535c\"";

const PLOT_W: f64 = W - LEFT - RIGHT;
const PLOT_H: f64 = H - TOP - BOTTOM;
const BASE: f64 = H - BOTTOM;

/// Where times and values land in the drawing.
struct Frame {
    start: i64,
    span: i64,
    ymax: f64,
}

impl Frame {
    fn x(&self, t: i64) -> f64 {
        LEFT + (t - self.start).clamp(0, self.span) as f64 / self.span as f64 * PLOT_W
    }
    fn y(&self, v: i64) -> f64 {
        self.y_of(v as f64)
    }
    fn y_of(&self, v: f64) -> f64 {
        TOP + (1.0 - v / self.ymax) * PLOT_H
    }
    /// The `x,y` drawing pairs of (time, value) points.
    fn points<'a>(&self, at: impl Iterator<Item = (&'a i64, &'a i64)>) -> Vec<String> {
        at.map(|(&t, &v)| format!("{:.1},{:.1}", self.x(t), self.y(v)))
            .collect()
    }
}

/// Each series with its value now appended at `now_ms`, so the line ends
/// at the number the page shows as now.
fn ending_now(series: &[Series], now_ms: i64) -> Vec<Series> {
    series
        .iter()
        .map(|s| {
            let mut points: Vec<(i64, i64)> =
                s.points.iter().copied().filter(|p| p.0 < now_ms).collect();
            points.push((now_ms, s.now));
            Series {
                points,
                ..s.clone()
            }
        })
        .collect()
}

/// The chart of `series` (one per relay, already ordered) over `range`
/// ending at `now_ms`, with the stream's `capacity` as a line when it is
/// known. Safe to embed unescaped.
pub fn svg(
    series: &[Series],
    range: Range,
    now_ms: i64,
    title: &str,
    capacity: Option<u64>,
) -> String {
    let series = ending_now(series, now_ms);
    let (times, tops) = stack(&series, range.bucket_ms());
    let totals = tops.last().cloned().unwrap_or_default();
    let peak = totals.iter().copied().max().unwrap_or(0);
    let current = totals.last().copied().unwrap_or(0);
    let capacity = capacity.and_then(|c| i64::try_from(c).ok());
    // At least 2, so the middle grid line is a whole listener.
    let top = peak.max(capacity.unwrap_or(0)).max(2);
    let frame = Frame {
        start: now_ms - range.span_ms(),
        span: range.span_ms(),
        ymax: nice_ceiling(top) as f64,
    };
    let mut out = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" xmlns=\"http://www.w3.org/2000/svg\" \
         aria-label=\"{}: listeners over the last {}, now {current}, peak {peak}{}\">",
        esc(title),
        range.label(),
        capacity
            .map(|c| format!(", capacity {c}"))
            .unwrap_or_default()
    );
    value_axis(&mut out, &frame);
    time_axis(&mut out, &frame, range, now_ms);
    if times.is_empty() {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" {LABEL} text-anchor=\"middle\">no samples in the last {}</text></svg>",
            LEFT + PLOT_W / 2.0,
            TOP + PLOT_H / 2.0,
            range.label()
        );
        return out;
    }
    no_data_before(&mut out, &frame, times[0]);
    areas(&mut out, &frame, &times, &tops, &series);
    if let Some(c) = capacity {
        capacity_line(&mut out, &frame, c);
    }
    total_line(&mut out, &frame, &times, &totals);
    out
}

/// Before the first sample there is no data (the balancer did not run or
/// the stream did not exist): shaded and said, not drawn as zero.
fn no_data_before(out: &mut String, frame: &Frame, first: i64) {
    let x = frame.x(first);
    if x - LEFT < 1.0 {
        return;
    }
    let _ = write!(
        out,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{PLOT_H}\" fill=\"#eef1f4\"/>",
        x - LEFT
    );
    if x - LEFT > 70.0 {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" {LABEL} text-anchor=\"middle\">no data</text>",
            LEFT + (x - LEFT) / 2.0,
            TOP + PLOT_H / 2.0
        );
    }
}

/// The stream's capacity now, dashed, labelled inside the plot.
fn capacity_line(out: &mut String, frame: &Frame, capacity: i64) {
    let y = frame.y(capacity);
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#c0362c\" stroke-width=\"1.5\" stroke-dasharray=\"5 3\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"13\" fill=\"#c0362c\">capacity {capacity}</text>",
        W - RIGHT,
        LEFT + 4.0,
        (y + 14.0).min(BASE - 4.0)
    );
}

/// Value axis: 0, half and the top, with light grid lines.
fn value_axis(out: &mut String, frame: &Frame) {
    let ymax = frame.ymax;
    for v in [0.0, ymax / 2.0, ymax] {
        // Listeners are whole: a half-listener line would mean nothing.
        if v.fract() != 0.0 {
            continue;
        }
        let yy = frame.y_of(v);
        let label = format!("{v:.0}");
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#e3e7eb\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {LABEL} text-anchor=\"end\">{label}</text>",
            W - RIGHT,
            LEFT - 5.0,
            yy + 4.5
        );
    }
}

/// Time axis: round UTC times (every 15 min, 6 h or day), and the base line.
fn time_axis(out: &mut String, frame: &Frame, range: Range, now_ms: i64) {
    let step = range.tick_ms();
    let mut t = (frame.start / step + 1) * step;
    while t <= now_ms {
        let xx = frame.x(t);
        let _ = write!(
            out,
            "<line x1=\"{xx:.1}\" y1=\"{BASE}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#b9c1ca\"/>",
            BASE + 4.0,
        );
        // A label this close to an edge would be cut off or run into the
        // value axis or the "UTC" note: the tick alone says enough.
        if xx > LEFT + 18.0 && xx < W - RIGHT - 24.0 {
            let _ = write!(
                out,
                "<text x=\"{xx:.1}\" y=\"{:.1}\" {LABEL} text-anchor=\"middle\">{}</text>",
                BASE + 20.0,
                time_label(t, range)
            );
        }
        t += step;
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{BASE}\" x2=\"{:.1}\" y2=\"{BASE}\" stroke=\"#8a949e\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" {LABEL} text-anchor=\"end\">UTC</text>",
        W - RIGHT,
        W - RIGHT,
        H - 2.0
    );
}

/// One area per relay, from the top of the stack down, so each lies over
/// the next. `times` is not empty.
fn areas(out: &mut String, frame: &Frame, times: &[i64], tops: &[Vec<i64>], series: &[Series]) {
    for k in (0..tops.len()).rev() {
        let upper = frame.points(times.iter().zip(&tops[k]));
        let lower: Vec<String> = match k {
            0 => vec![
                format!("{:.1},{BASE:.1}", frame.x(times[times.len() - 1])),
                format!("{:.1},{BASE:.1}", frame.x(times[0])),
            ],
            _ => frame.points(times.iter().zip(&tops[k - 1]).rev()),
        };
        let _ = write!(
            out,
            "<polygon fill=\"{c}\" fill-opacity=\"0.55\" stroke=\"{c}\" stroke-width=\"1\" points=\"{} {}\">\
             <title>{}</title></polygon>",
            upper.join(" "),
            lower.join(" "),
            esc(&series[k].name),
            c = colour(k),
        );
    }
}

/// The total's line, its current value marked at the end. `times` is not
/// empty.
fn total_line(out: &mut String, frame: &Frame, times: &[i64], totals: &[i64]) {
    let current = totals.last().copied().unwrap_or(0);
    let line = frame.points(times.iter().zip(totals));
    let (lx, ly) = (frame.x(times[times.len() - 1]), frame.y(current));
    let _ = write!(
        out,
        "<polyline fill=\"none\" stroke=\"#1d232a\" stroke-width=\"1.5\" points=\"{}\"/>\
         <circle cx=\"{lx:.1}\" cy=\"{ly:.1}\" r=\"3.5\" fill=\"#1d232a\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"15\" font-weight=\"700\" fill=\"#1d232a\" text-anchor=\"end\">{current}</text></svg>",
        line.join(" "),
        lx - 6.0,
        (ly - 7.0).max(TOP + 10.0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn s(name: &str, points: &[(i64, i64)]) -> Series {
        Series {
            name: name.into(),
            points: points.to_vec(),
            now: points.last().map_or(0, |p| p.1),
        }
    }

    #[test]
    fn relays_stack_and_the_total_is_marked() {
        let a = s("fra", &[(NOW - 120_000, 3), (NOW - 60_000, 5)]);
        let b = s("ams", &[(NOW - 120_000, 4), (NOW - 60_000, 6)]);
        let (times, tops) = stack(&[a.clone(), b.clone()], MIN_MS);
        assert_eq!(times.len(), 2);
        assert_eq!(tops[0], vec![3, 5]);
        assert_eq!(tops[1], vec![7, 11]);
        let svg = svg(&[a, b], Range::Hour, NOW, "live", None);
        assert!(svg.contains("now 11, peak 11"), "{svg}");
        assert_eq!(svg.matches("<polygon").count(), 2);
        assert!(svg.contains(">11</text></svg>"));
        // Round value labels: the peak 11 gives an axis up to 20.
        assert!(svg.contains(">20</text>") && svg.contains(">10</text>"));
    }

    #[test]
    fn a_relay_gone_for_long_counts_as_zero() {
        let a = s("fra", &[(NOW - 50 * MIN_MS, 5)]);
        let b = s("ams", &[(NOW - 50 * MIN_MS, 1), (NOW - 10 * MIN_MS, 2)]);
        let (_, tops) = stack(&[a, b], MIN_MS);
        assert_eq!(tops[1], vec![6, 2]);
    }

    #[test]
    fn time_axis_has_round_utc_labels() {
        // 2023-11-14 22:13:20 UTC.
        let svg = svg(&[], Range::Day, NOW, "live", None);
        assert!(svg.contains(">00:00</text>") && svg.contains(">18:00</text>"));
        assert!(svg.contains("no samples in the last 24 h"));
        let week = super::svg(&[], Range::Week, NOW, "live", None);
        assert!(week.contains(">11-14</text>"));
        let hour = super::svg(&[], Range::Hour, NOW, "x<y", None);
        assert!(hour.contains(">22:00</text>") && hour.contains("x&lt;y"));
    }

    #[test]
    fn now_is_the_relays_listeners_now_and_the_capacity_is_drawn() {
        // The last bucket peaked at 5; the relay has 2 listeners now.
        let mut a = s("fra", &[(NOW - 30 * MIN_MS, 5)]);
        a.now = 2;
        let svg = svg(&[a], Range::Hour, NOW, "live", Some(8));
        assert!(svg.contains("now 2, peak 5, capacity 8"), "{svg}");
        assert!(svg.contains(">2</text></svg>"), "{svg}");
        assert!(svg.contains("capacity 8</text>"));
        // The half hour before the first sample is shaded "no data".
        assert!(svg.contains(">no data</text>"));
        // One listener at most: the axis is 0, 1, 2, never 0.5.
        let one = super::svg(
            &[s("fra", &[(NOW - MIN_MS, 1)])],
            Range::Hour,
            NOW,
            "l",
            None,
        );
        assert!(!one.contains(">0.5<") && one.contains(">1</text>"), "{one}");
    }

    #[test]
    fn ranges_round_trip_and_default_to_a_day() {
        for r in Range::ALL {
            assert_eq!(Range::parse(Some(r.param())), r);
        }
        assert_eq!(Range::parse(Some("bogus")), Range::Day);
        assert_eq!(Range::parse(None), Range::Day);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(450), 500);
    }
}
