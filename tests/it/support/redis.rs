//! A real `redis-server` (Debian `redis-server`) per test.
//!
//! It listens on a Unix socket in the test's own directory (`--port 0`
//! turns TCP off): Redis cannot report an ephemeral TCP port, and a socket
//! path needs no free-port guess, cannot collide with a parallel test, and
//! is there again when the test restarts Redis. [`Redis::start_tcp`] covers
//! `redis://` on a loopback port, picked free and retried if taken.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::icecast::skip;

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A loopback port free right now (only for [`Redis::start_tcp`], which
/// retries when another process takes it first).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Redis {
    pub url: String,
    dir: tempfile::TempDir,
    port: Option<u16>,
    child: Option<Child>,
}

impl Redis {
    /// `None` (after printing why, or failing under
    /// `ICECAST_BALANCER_E2E=required`) when redis-server is missing.
    pub fn start() -> Option<Redis> {
        if !Path::new(REDIS_SERVER).exists() {
            skip("redis-server is not installed (Debian: apt-get install redis-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let url = format!("unix://{}", dir.path().join("redis.sock").display());
        let mut r = Redis {
            url,
            dir,
            port: None,
            child: None,
        };
        r.restart();
        Some(r)
    }

    /// On a free loopback TCP port instead.
    pub fn start_tcp() -> Option<Redis> {
        if !Path::new(REDIS_SERVER).exists() {
            skip("redis-server is not installed (Debian: apt-get install redis-server)");
            return None;
        }
        let mut r = Redis {
            url: String::new(),
            dir: tempfile::tempdir().unwrap(),
            port: None,
            child: None,
        };
        for _ in 0..5 {
            // Another process may take the port between the check and the
            // bind: then redis-server exits and the next port is tried.
            let port = free_port();
            r.port = Some(port);
            r.url = format!("redis://127.0.0.1:{port}/");
            if r.try_start() {
                return Some(r);
            }
        }
        panic!(
            "redis-server did not start on any of 5 free ports: {}",
            r.log()
        );
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn args(&self) -> Vec<String> {
        let dir = self.dir.path().display().to_string();
        let mut a: Vec<String> = vec![
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
        ];
        a.extend([
            "--dir".into(),
            dir.clone(),
            "--logfile".into(),
            format!("{dir}/redis.log"),
        ]);
        match self.port {
            Some(p) => a.extend([
                "--port".into(),
                p.to_string(),
                "--bind".into(),
                "127.0.0.1".into(),
            ]),
            None => a.extend([
                "--port".into(),
                "0".into(),
                "--unixsocket".into(),
                self.socket().display().to_string(),
                "--unixsocketperm".into(),
                "700".into(),
            ]),
        }
        a
    }

    /// Starts (again) on the same address, with no data.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server did not start: {}",
            self.log()
        );
    }

    fn try_start(&mut self) -> bool {
        self.stop();
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(REDIS_SERVER)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && c.try_wait().ok().flatten().is_some()
            {
                return false;
            }
            if self.ping() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url.as_str()) else {
            return false;
        };
        client
            .get_connection_with_timeout(Duration::from_millis(200))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Kills the server (SIGKILL: as a crash, nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs one command synchronously (`FLUSHALL`, `KEYS *`, …).
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut c = client.get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut c).unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
