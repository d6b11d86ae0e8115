//! Routing situations for unit tests: relays described in a line each,
//! turned into a snapshot without a database.

use std::sync::Arc;

use crate::domain::{Coords, CountryCode, Health, HealthState as State, LocationSource, Policy};
use crate::routing::snapshot::{
    MountCounters, MountEntry, ServerCounters, ServerEntry, Snapshot, StreamCounters, StreamEntry,
};

pub const NOW: u64 = 1_000_000;
pub const TTL: u64 = 60;

pub struct Relay {
    pub name: &'static str,
    pub listeners: u32,
    pub max: Option<u32>,
    pub server_max: Option<u32>,
    pub weight: u32,
    pub up: bool,
    pub enabled: bool,
    pub live: bool,
    pub country: Option<&'static str>,
    pub coords: Option<(f64, f64)>,
    /// Gets `https_url = https://<name>`.
    pub https: bool,
    pub policy: Policy,
}

pub fn relay(name: &'static str, listeners: u32, max: Option<u32>) -> Relay {
    Relay {
        name,
        listeners,
        max,
        server_max: None,
        weight: 100,
        up: true,
        enabled: true,
        live: true,
        country: None,
        coords: None,
        https: false,
        policy: Policy::default(),
    }
}

pub fn snapshot(relays: Vec<Relay>) -> Snapshot {
    let mut servers = Vec::new();
    let mut mounts = Vec::new();
    for (i, r) in relays.iter().enumerate() {
        servers.push(ServerEntry {
            id: i as i64,
            name: r.name.into(),
            url: format!("http://{}", r.name),
            https_url: r.https.then(|| format!("https://{}", r.name)),
            country: r.country.map(|c| CountryCode::parse(c).unwrap()),
            country_source: LocationSource::Configured,
            coords: r.coords.map(|(lat, lon)| Coords { lat, lon }),
            coords_source: LocationSource::Configured,
            max_listeners: r.server_max,
            weight: r.weight,
            enabled: r.enabled,
            policy: r.policy.clone(),
            bandwidth: None,
            health: Health {
                state: if r.up { State::Up } else { State::Down },
                failures: 0,
                successes: 1,
            },
            listeners: u64::from(r.listeners),
            last_poll_at: None,
            last_success_at: None,
            last_error: None,
            last_error_at: None,
            latency_ms: None,
            source: None,
            callback_token: None,
            counters: Arc::new(ServerCounters::default()),
        });
        mounts.push(MountEntry {
            id: i as i64,
            server: i,
            stream: 0,
            path: "/live.mp3".into(),
            live: r.live,
            listeners: r.listeners,
            max: r.max,
            configured_max: None,
            callbacks: false,
            hidden: false,
            kbps: None,
            counters: Arc::new(MountCounters::default()),
        });
    }
    let stream = StreamEntry {
        id: 0,
        name: "live".into(),
        description: String::new(),
        fallback_url: None,
        allowed_countries: None,
        allow_unknown: true,
        require_https: false,
        bitrate_kbps: None,
        mounts: (0..mounts.len()).collect(),
        counters: Arc::new(StreamCounters::default()),
        routes: Default::default(),
    };
    Snapshot::from_parts(servers, vec![stream], mounts)
}

pub fn located(name: &'static str, country: &'static str, lat: f64, lon: f64) -> Relay {
    let mut r = relay(name, 0, Some(100));
    r.country = Some(country);
    r.coords = Some((lat, lon));
    r
}
