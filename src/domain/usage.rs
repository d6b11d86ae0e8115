//! What a relay reports about one of its mounts.

use super::MountPath;

/// One mount as a relay reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountUsage {
    pub mount: MountPath,
    pub listeners: u32,
    /// `None`: Icecast has no max-listeners for this mount ("unlimited").
    pub max: Option<u32>,
}

/// Where a relay's usage was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PollSource {
    /// Our stylesheet, with limits (the one to install).
    #[serde(rename = "load.xsl")]
    LoadXsl,
    /// Icecast's own JSON, which hides `max_listeners`.
    #[serde(rename = "status-json.xsl")]
    StatusJson,
}

impl PollSource {
    /// The file under the relay's base URL, as stored and shown.
    pub fn file(self) -> &'static str {
        match self {
            PollSource::LoadXsl => "load.xsl",
            PollSource::StatusJson => "status-json.xsl",
        }
    }
}

impl std::fmt::Display for PollSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.file())
    }
}
