//! Shared test helpers: the app in-process on port 0 (`app`) and fake
//! relays (`fake_relay`), a real Icecast 2.4.4 (`icecast`), GeoIP test
//! databases (`geoip`), a WebDriver client for headless Chromium
//! (`webdriver`), and a real redis-server (`redis`).
#![allow(dead_code)]

pub mod admin;
pub mod app;
pub mod fake_relay;
pub mod geoip;
pub mod icecast;
pub mod proxy;
pub mod redis;
pub mod webdriver;

use std::time::{Duration, Instant};

/// Polls `check` until it holds or `limit` passes; true when it held. The
/// one place tests wait for something another process does.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The TCP port a child process listens on after being told to bind port
/// 0, read from /proc: its socket inodes, matched against the kernel's
/// table of listening sockets. No port is picked before the child binds
/// it, so no other process can take it in between.
pub async fn listening_port(pid: u32, limit: Duration) -> Option<u16> {
    let mut found = None;
    eventually(limit, async || {
        found = listening_ports_now(pid).into_iter().next();
        found.is_some()
    })
    .await;
    found
}

fn listening_ports_now(pid: u32) -> Vec<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
            if f.len() > 9
                && f[3] == "0A"
                && inodes.contains(f[9])
                && let Some(port) = f[1].rsplit(':').next()
            {
                ports.extend(u16::from_str_radix(port, 16).ok());
            }
        }
    }
    ports
}

/// `name` on the PATH, or `None` after a printed skip (a failure under
/// `ICECAST_BALANCER_E2E=required`).
pub fn require_binary(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        icecast::skip(&format!("{name} is not installed"));
    }
    found
}
