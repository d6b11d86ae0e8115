//! What an Icecast relay answers the poller, and a tiny stand-in relay
//! that serves load.xsl (or status-json.xsl) from state the test controls
//! and can misbehave on demand: hang, answer huge, answer garbage, fail.
//!
//! [`load_xsl`] and [`status_json`] are the one rendering of those answers;
//! the benchmarks' relays (`bench/balance.rs`, `bench/tools/fake_relays.rs`)
//! serve them too.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Debug, Clone)]
pub enum Mode {
    /// load.xsl with the current mounts.
    LoadXsl,
    /// load.xsl is 404; status-json.xsl carries the mounts.
    StatusJsonOnly,
    /// Both are 404, as from Icecast-KH (which ships no status-json.xsl)
    /// when load.xsl is missing or its stylesheet queue is full.
    NotFound,
    /// Answer this status with an empty body.
    Status(u16),
    /// Never answer.
    Hang,
    /// Answer a body of this many bytes.
    Huge(usize),
    /// Answer this body verbatim.
    Body(String),
    /// Answer `302 Found` with this `Location`.
    Redirect(String),
}

#[derive(Debug)]
struct Inner {
    mounts: Vec<(String, u32, Option<u32>)>,
    mode: Mode,
    hits: u64,
}

#[derive(Clone)]
pub struct FakeRelay {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl FakeRelay {
    /// `mounts`: (path, listeners, max or None for unlimited).
    pub async fn start(mounts: &[(&str, u32, Option<u32>)]) -> FakeRelay {
        let inner = Arc::new(Mutex::new(Inner {
            mounts: mounts
                .iter()
                .map(|(m, l, x)| (m.to_string(), *l, *x))
                .collect(),
            mode: Mode::LoadXsl,
            hits: 0,
        }));
        let app = Router::new()
            .route("/load.xsl", get(load_xsl_route))
            .route("/status-json.xsl", get(status_json_route))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRelay {
            url,
            inner,
            task: Arc::new(task),
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = mode;
    }

    pub fn set_listeners(&self, mount: &str, listeners: u32) {
        let mut i = self.inner.lock().unwrap();
        for m in i.mounts.iter_mut().filter(|m| m.0 == mount) {
            m.1 = listeners;
        }
    }

    pub fn set_mounts(&self, mounts: &[(&str, u32, Option<u32>)]) {
        self.inner.lock().unwrap().mounts = mounts
            .iter()
            .map(|(m, l, x)| (m.to_string(), *l, *x))
            .collect();
    }

    pub fn hits(&self) -> u64 {
        self.inner.lock().unwrap().hits
    }

    /// Stops answering: connections are refused from now on.
    pub fn kill(&self) {
        self.task.abort();
    }
}

/// One mount as the relay reports it: path, listeners, and its limit
/// (`None`: Icecast has no `max-listeners`, "unlimited").
pub type MountLoad<'a> = (&'a str, u32, Option<u32>);

/// The `load.xsl` document for `mounts`, in the format of `xsl/load.xsl`:
/// the text is the free slots, the attributes the raw numbers, and
/// `listener_connections` (Icecast's cumulative count of accepted
/// listeners) when given.
pub fn load_xsl<'a>(
    mounts: impl IntoIterator<Item = MountLoad<'a>>,
    listener_connections: Option<u64>,
) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<load");
    if let Some(n) = listener_connections {
        let _ = write!(s, " listener_connections=\"{n}\"");
    }
    s.push('>');
    for (m, l, max) in mounts {
        let _ = match max {
            Some(x) => write!(
                s,
                "<mount name=\"{m}\" listeners=\"{l}\" max=\"{x}\">{}</mount>",
                x.saturating_sub(l)
            ),
            None => write!(
                s,
                "<mount name=\"{m}\" listeners=\"{l}\" max=\"unlimited\">unlimited</mount>"
            ),
        };
    }
    s.push_str("</load>\n");
    s
}

/// Icecast 2.4's `/status-json.xsl` for `mounts` served at `base` (e.g.
/// `http://localhost:8000`): `source` absent, one object, or an array, as
/// Icecast writes it; no limits (status-json has none).
pub fn status_json<'a>(
    base: &str,
    mounts: impl IntoIterator<Item = MountLoad<'a>>,
) -> serde_json::Value {
    let sources: Vec<serde_json::Value> = mounts
        .into_iter()
        .map(|(m, l, _)| serde_json::json!({"listenurl": format!("{base}{m}"), "listeners": l}))
        .collect();
    let source = match sources.len() {
        0 => serde_json::Value::Null,
        1 => sources[0].clone(),
        _ => serde_json::Value::Array(sources),
    };
    let mut stats = serde_json::json!({
        "admin": "icemaster@localhost",
        "host": "localhost",
        "server_id": "Icecast 2.4.4",
    });
    if !source.is_null() {
        stats["source"] = source;
    }
    serde_json::json!({ "icestats": stats })
}

fn borrowed(mounts: &[(String, u32, Option<u32>)]) -> impl Iterator<Item = MountLoad<'_>> {
    mounts.iter().map(|(m, l, x)| (m.as_str(), *l, *x))
}

async fn misbehave(mode: &Mode) -> Option<Response> {
    match mode {
        Mode::Status(code) => Some(StatusCode::from_u16(*code).unwrap().into_response()),
        // Never answers; the poller's timeout must end the wait.
        Mode::Hang => std::future::pending().await,
        Mode::Huge(n) => Some(("x".repeat(*n)).into_response()),
        Mode::Body(b) => Some(b.clone().into_response()),
        Mode::Redirect(to) => Some((StatusCode::FOUND, [("location", to.clone())]).into_response()),
        _ => None,
    }
}

async fn load_xsl_route(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    let (mode, mounts) = {
        let mut i = inner.lock().unwrap();
        i.hits += 1;
        (i.mode.clone(), i.mounts.clone())
    };
    if let Some(r) = misbehave(&mode).await {
        return r;
    }
    match mode {
        Mode::StatusJsonOnly | Mode::NotFound => StatusCode::NOT_FOUND.into_response(),
        _ => (
            [("content-type", "text/xml")],
            load_xsl(borrowed(&mounts), None),
        )
            .into_response(),
    }
}

async fn status_json_route(State(inner): State<Arc<Mutex<Inner>>>) -> Response {
    let (mode, mounts) = {
        let i = inner.lock().unwrap();
        (i.mode.clone(), i.mounts.clone())
    };
    if matches!(mode, Mode::NotFound) {
        return StatusCode::NOT_FOUND.into_response();
    }
    axum::Json(status_json("http://localhost:8000", borrowed(&mounts))).into_response()
}
