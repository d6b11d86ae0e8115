//! HTTP to relays: a per-request timeout and a body cap, so a relay that
//! hangs or answers gigabytes costs at most `timeout` and `max_body` bytes.

use std::time::Duration;

use super::parse::{parse_load_xsl, parse_status_json};
use crate::domain::{MountUsage, PollSource};

#[derive(Clone)]
pub struct Fetcher {
    client: reqwest::Client,
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
    #[error("{file}: answer {size}is over the {limit} byte limit")]
    TooLarge {
        file: PollSource,
        size: String,
        limit: usize,
    },
    /// The answer came but is not what the file should hold.
    #[error("{0}")]
    Invalid(String),
    #[error("neither load.xsl nor status-json.xsl found (HTTP 404): install xsl/load.xsl")]
    NotInstalled,
    /// The whole poll of this relay overran its bound.
    #[error("timed out")]
    Overran,
}

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
    pub async fn usage(&self, base: &str) -> Result<(PollSource, Vec<MountUsage>), FetchError> {
        if let Some(body) = self.get(base, PollSource::LoadXsl).await? {
            let mounts = parse_load_xsl(&body).map_err(FetchError::Invalid)?;
            return Ok((PollSource::LoadXsl, mounts));
        }
        match self.get(base, PollSource::StatusJson).await? {
            Some(body) => {
                let mounts = parse_status_json(&body).map_err(FetchError::Invalid)?;
                Ok((PollSource::StatusJson, mounts))
            }
            None => Err(FetchError::NotInstalled),
        }
    }

    /// `Ok(None)` on 404, the body on 2xx, an error otherwise.
    async fn get(&self, base: &str, file: PollSource) -> Result<Option<Vec<u8>>, FetchError> {
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
            let status = status.to_string();
            return Err(FetchError::Status { file, status });
        }
        let limit = self.max_body;
        if let Some(len) = resp.content_length()
            && len > limit as u64
        {
            let size = format!("of {len} bytes ");
            return Err(FetchError::TooLarge { file, size, limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, file))? {
            if body.len() + chunk.len() > limit {
                let size = String::new();
                return Err(FetchError::TooLarge { file, size, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body))
    }
}

/// reqwest's top-level message is vague ("error sending request"); the
/// cause chain says what an operator can act on (refused, timed out, DNS).
fn describe(e: &reqwest::Error, file: PollSource) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout { file };
    }
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    FetchError::Transport { file, detail }
}
