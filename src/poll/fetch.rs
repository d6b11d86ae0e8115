//! HTTP to relays: a per-request timeout and a body cap, so a relay that
//! hangs or answers gigabytes costs at most `timeout` and `max_body` bytes.

use std::time::Duration;

use super::parse::{parse_load, parse_status_json};
use crate::domain::text::{RELAY_TEXT_MAX, clean};
use crate::domain::{MountUsage, PollSource};

/// What one poll read: where, the mounts, and `listener_connections`.
pub type Report = (PollSource, Vec<MountUsage>, Option<u64>);

/// Two clients: one keeping an idle connection per relay between rounds
/// (new connections every round would leave thousands of sockets in
/// TIME_WAIT and slow every `connect`), and one keeping none, for networks
/// too large for the descriptor budget.
#[derive(Clone)]
pub struct Fetcher {
    pooled: reqwest::Client,
    fresh: reqwest::Client,
    /// Relays up to which idle connections are kept.
    keep_alive_max: usize,
    use_fresh: bool,
    max_body: usize,
}

/// Why a relay could not be read. The text is what the admin, the status
/// API and the log show; it names the file so the operator knows where to
/// look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("{file}: timed out")]
    Timeout { file: PollSource },
    /// Refused, reset, DNS: the cause chain as reqwest reports it.
    #[error("{file}: {detail}")]
    Transport { file: PollSource, detail: String },
    #[error("{file}: HTTP {status}")]
    Status { file: PollSource, status: String },
    /// Not followed: it could point anywhere, an internal address
    /// included; the operator fixes `poll_url` instead.
    #[error(
        "{file}: HTTP {status} to {location:?}, not followed: set the server's poll_url to \
         where {file} really is"
    )]
    Redirect {
        file: PollSource,
        status: String,
        location: String,
    },
    #[error("{file}: answer {}is over the {limit} byte limit", size_text(*.size))]
    TooLarge {
        file: PollSource,
        /// The announced length, when the relay sent one.
        size: Option<u64>,
        limit: usize,
    },
    /// The answer came but is not what the file should hold (the text is
    /// the relay's, cut and escaped).
    #[error("{0}")]
    Invalid(String),
    #[error("neither load.xsl nor status-json.xsl found (HTTP 404): install xsl/load.xsl")]
    NotInstalled,
    /// load.xsl answered 404 where it answered before: Icecast-KH does so
    /// while more than 40 stylesheet requests are queued. Judged by the
    /// round (it knows what the relay served before), not by the fetch.
    #[error(
        "load.xsl: HTTP 404 from a relay that served it before: taken as busy (Icecast-KH \
         answers 404 while its stylesheet queue is full), not as down"
    )]
    Busy,
    /// The whole poll of this relay overran its bound.
    #[error("timed out")]
    Overran,
}

impl Fetcher {
    /// `keep_alive_max`: the most relays for which an idle connection each
    /// fits in the descriptor budget.
    pub fn new(
        timeout: Duration,
        max_body: usize,
        keep_alive_max: usize,
    ) -> anyhow::Result<Fetcher> {
        let client = |idle_per_host: usize| {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(idle_per_host)
                // Longer than any sensible poll interval.
                .pool_idle_timeout(Duration::from_secs(120))
                .user_agent(concat!("icecast-balancer/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Fetcher {
            pooled: client(1)?,
            fresh: client(0)?,
            keep_alive_max,
            use_fresh: false,
            max_body,
        })
    }

    /// The fetcher for a round over `relays`: idle connections are kept
    /// only when one per relay fits the budget.
    pub fn for_round(&self, relays: usize) -> Fetcher {
        let mut f = self.clone();
        f.use_fresh = relays > self.keep_alive_max;
        f
    }

    /// Reads a relay's mounts from `load.xsl`, or from `status-json.xsl`
    /// when the relay has no load.xsl installed (404).
    pub async fn usage(&self, base: &str) -> Result<(PollSource, Vec<MountUsage>), FetchError> {
        self.report(base).await.map(|(s, m, _)| (s, m))
    }

    /// `usage` plus the relay's cumulative `listener_connections`, which
    /// only load.xsl carries (Icecast's status-json.xsl leaves it out, and
    /// Icecast-KH ships no status-json.xsl at all).
    pub async fn report(&self, base: &str) -> Result<Report, FetchError> {
        if let Some(body) = self.get(base, PollSource::LoadXsl).await? {
            let (mounts, connections) = parse_load(&body).map_err(invalid)?;
            return Ok((PollSource::LoadXsl, mounts, connections));
        }
        match self.get(base, PollSource::StatusJson).await? {
            Some(body) => {
                let mounts = parse_status_json(&body).map_err(invalid)?;
                Ok((PollSource::StatusJson, mounts, None))
            }
            None => Err(FetchError::NotInstalled),
        }
    }

    /// `Ok(None)` on 404, the body on 2xx, an error otherwise.
    async fn get(&self, base: &str, file: PollSource) -> Result<Option<Vec<u8>>, FetchError> {
        let url = format!("{}/{file}", base.trim_end_matches('/'));
        let client = if self.use_fresh {
            &self.fresh
        } else {
            &self.pooled
        };
        let mut resp = client
            .get(&url)
            .send()
            .await
            .map_err(|e| describe(&e, file))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| clean(&String::from_utf8_lossy(v.as_bytes()), 200))
                .unwrap_or_default();
            let status = status.to_string();
            return Err(FetchError::Redirect {
                file,
                status,
                location,
            });
        }
        if !status.is_success() {
            let status = status.to_string();
            return Err(FetchError::Status { file, status });
        }
        let limit = self.max_body;
        if let Some(len) = resp.content_length()
            && len > limit as u64
        {
            let size = Some(len);
            return Err(FetchError::TooLarge { file, size, limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, file))? {
            if body.len() + chunk.len() > limit {
                let size = None;
                return Err(FetchError::TooLarge { file, size, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// A parse error quotes the relay's answer: cut and escaped before it goes
/// to the store, the log and the pages.
fn invalid(e: String) -> FetchError {
    FetchError::Invalid(clean(&e, RELAY_TEXT_MAX))
}

fn size_text(size: Option<u64>) -> String {
    size.map_or_else(String::new, |n| format!("of {n} bytes "))
}

/// reqwest's top-level message is vague ("error sending request"): the
/// common causes are said in words with what to check; anything else
/// keeps the cause chain, which names it.
fn describe(e: &reqwest::Error, file: PollSource) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout { file };
    }
    let mut chain = e.to_string();
    let mut io_kind = None;
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        src = s.source();
    }
    let detail = in_words(io_kind, &chain, e.url()).unwrap_or(chain);
    let detail = clean(&detail, RELAY_TEXT_MAX);
    FetchError::Transport { file, detail }
}

/// "connection refused: is Icecast running on 127.0.0.1:8000?" for the
/// causes an operator meets most; `None` for the rest.
fn in_words(
    io_kind: Option<std::io::ErrorKind>,
    chain: &str,
    url: Option<&reqwest::Url>,
) -> Option<String> {
    use std::io::ErrorKind as K;
    let host = url.and_then(|u| u.host_str()).unwrap_or("the relay");
    let at = match url.and_then(|u| u.port_or_known_default()) {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let lower = chain.to_ascii_lowercase();
    Some(match io_kind {
        Some(K::ConnectionRefused) => format!("connection refused: is Icecast running on {at}?"),
        Some(K::ConnectionReset | K::ConnectionAborted) => {
            format!("the connection to {at} was cut (reset by the relay or a firewall)")
        }
        Some(K::HostUnreachable | K::NetworkUnreachable) => {
            format!("no route to {at}: check the address and the network")
        }
        _ if lower.contains("dns error") || lower.contains("failed to lookup") => {
            format!("the name {host} does not resolve (DNS): check the server's address")
        }
        _ if lower.contains("certificate") || lower.contains("tls") => {
            format!(
                "TLS with {at} failed: {}",
                chain.rsplit(": ").next().unwrap_or(chain)
            )
        }
        _ => return None,
    })
}
