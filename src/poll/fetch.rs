//! HTTP to relays: a per-request timeout and a body cap, so a relay that
//! hangs or answers gigabytes costs at most `timeout` and `max_body` bytes.

use std::time::Duration;

use super::parse::{parse_load_xsl, parse_status_json};
use crate::domain::MountUsage;

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

pub const LOAD_XSL: &str = "load.xsl";
pub const STATUS_JSON: &str = "status-json.xsl";

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
                .redirect(reqwest::redirect::Policy::limited(3))
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
    pub async fn usage(&self, base: &str) -> Result<(&'static str, Vec<MountUsage>), String> {
        match self.get(base, LOAD_XSL).await? {
            Some(body) => Ok((LOAD_XSL, parse_load_xsl(&body)?)),
            None => match self.get(base, STATUS_JSON).await? {
                Some(body) => Ok((STATUS_JSON, parse_status_json(&body)?)),
                None => Err(format!(
                    "neither {LOAD_XSL} nor {STATUS_JSON} found (HTTP 404): install xsl/load.xsl"
                )),
            },
        }
    }

    /// `Ok(None)` on 404, the body on 2xx, an error otherwise.
    async fn get(&self, base: &str, file: &str) -> Result<Option<Vec<u8>>, String> {
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
        if !status.is_success() {
            return Err(format!("{file}: HTTP {status}"));
        }
        if let Some(len) = resp.content_length()
            && len > self.max_body as u64
        {
            return Err(format!(
                "{file}: answer of {len} bytes is over the {} byte limit",
                self.max_body
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, file))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(format!(
                    "{file}: answer is over the {} byte limit",
                    self.max_body
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// reqwest's top-level message is vague ("error sending request"); the
/// cause chain says what an operator can act on (refused, timed out, DNS).
fn describe(e: &reqwest::Error, file: &str) -> String {
    if e.is_timeout() {
        return format!("{file}: timed out");
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    format!("{file}: {msg}")
}
