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
