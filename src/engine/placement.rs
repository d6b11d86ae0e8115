//! GeoIP placement of relays: where a relay without configured
//! coordinates or country is, from the address its URL's host resolves
//! to. Never on the redirect path: poll rounds and GeoIP reloads do it,
//! and the next snapshot build reads the result.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::domain::{LocationSource, ResolvedLocation};
use crate::geo::Geo;
use crate::routing::Snapshot;

/// Looks up in GeoIP the host of every enabled relay of `snap` that lacks
/// a configured location or country. An IP literal needs no DNS; a name
/// that does not resolve within `limit` keeps what it had in `before`.
pub async fn place(
    geo: &Geo,
    snap: &Snapshot,
    before: &HashMap<i64, ResolvedLocation>,
    limit: Duration,
) -> HashMap<i64, ResolvedLocation> {
    let wanted = snap.servers.iter().filter(|s| {
        s.enabled
            && (s.coords_source != LocationSource::Configured
                || s.country_source != LocationSource::Configured)
    });
    let mut lookups = tokio::task::JoinSet::new();
    for s in wanted {
        let (id, url) = (s.id, s.url.clone());
        lookups.spawn(async move {
            let addr = tokio::time::timeout(limit, host_address(&url))
                .await
                .unwrap_or_else(|_| Err(format!("no DNS answer within {limit:?}")));
            (id, url, addr)
        });
    }
    let mut placed = HashMap::new();
    while let Some(joined) = lookups.join_next().await {
        let Ok((id, url, addr)) = joined else {
            continue;
        };
        match addr {
            Ok(ip) => {
                let g = geo.lookup(ip);
                let loc = ResolvedLocation {
                    country: g.country,
                    coords: g.coords,
                };
                placed.insert(id, loc);
            }
            Err(e) => {
                tracing::warn!(%url, error = %e, "cannot resolve a relay's host for GeoIP");
                if let Some(old) = before.get(&id) {
                    placed.insert(id, *old);
                }
            }
        }
    }
    placed
}

/// The address a server URL's host stands for (the first DNS answer).
async fn host_address(url: &str) -> Result<IpAddr, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| e.to_string())?;
    let host = parsed.host_str().ok_or("the URL has no host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    let port = parsed.port_or_known_default().unwrap_or(80);
    tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| e.to_string())?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| format!("{bare} has no address"))
}
