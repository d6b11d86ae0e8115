//! HTTP to relays: a per-request timeout and a body cap, so a relay that
//! hangs or answers gigabytes costs at most `timeout` and `max_body` bytes.

use std::time::Duration;

use super::parse::{parse_load_xsl, parse_status_json};
use crate::domain::MountUsage;

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    max_body: usize,
}

pub const LOAD_XSL: &str = "load.xsl";
pub const STATUS_JSON: &str = "status-json.xsl";

impl Fetcher {
    pub fn new(timeout: Duration, max_body: usize) -> anyhow::Result<Fetcher> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("icecast-balancer/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Fetcher { client, max_body })
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
        let mut resp = self
            .client
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
