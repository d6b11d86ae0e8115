//! Relays that registered themselves and fell silent: drained after
//! `--announce-drain-after`, removed after `--announce-remove-after`
//! (`POST /api/v1/relays/announce` is where they register; the background
//! loop in `app` calls [`expire`]). Silence is measured on the injected
//! clock, so tests move it instead of waiting.

use super::{Engine, Result};
use crate::domain::ServerSpec;
use crate::store::announced::{self, AnnouncedRow};
use crate::store::changes::{self, ChangeTx};
use crate::store::servers;

/// What one expiry pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    pub drained: Vec<String>,
    pub removed: Vec<String>,
}

/// Drains the announced relays silent for `drain_after` and removes those
/// silent for `remove_after` (the background loop calls this; so can tests).
pub async fn expire(state: &Engine) -> Result<Expired> {
    let now = state.clock().now_ms();
    let s = &state.settings().announce;
    let (drain_ms, remove_ms) = (
        s.drain_after.as_millis() as i64,
        s.remove_after.as_millis() as i64,
    );
    let mut tx = state.begin("system").await?;
    let mut done = Expired::default();
    for a in announced::list(tx.conn()).await? {
        let silent = now - a.last_seen_at;
        if silent >= remove_ms {
            changes::delete_server(&mut tx, a.server_id).await?;
            done.removed.push(a.server_name);
        } else if silent >= drain_ms && a.drained_at.is_none() {
            drain(&mut tx, &a, now).await?;
            done.drained.push(a.server_name);
        }
    }
    if state.writer().commit(tx).await?.is_some() {
        state.refresh().await?;
    }
    for name in &done.drained {
        tracing::warn!(server = %name, "announced relay fell silent; draining it");
    }
    for name in &done.removed {
        tracing::warn!(server = %name, "announced relay silent too long; removed");
    }
    Ok(done)
}

async fn drain(tx: &mut ChangeTx, a: &AnnouncedRow, now: i64) -> Result<()> {
    let row = servers::get(tx.conn(), a.server_id).await?;
    let spec = ServerSpec {
        enabled: false,
        ..row.spec()?
    };
    if row.enabled {
        changes::update_server(tx, row.id, &spec).await?;
    }
    Ok(announced::mark_drained(tx.conn(), a.server_id, now).await?)
}
