//! A real Icecast 2.4.4 (Debian `icecast2`) for end-to-end tests: a
//! generated config on a free loopback port, the project's own
//! `xsl/load.xsl` in a private copy of the webroot, and live sources fed
//! with silent MP3 frames at real-time pace.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::{eventually, listening_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ICECAST: &str = "/usr/bin/icecast2";
const WEBROOT: &str = "/usr/share/icecast2/web";
const ADMINROOT: &str = "/usr/share/icecast2/admin";

/// Under `ICECAST_BALANCER_E2E=required` (CI) a missing package is a
/// failure, not a skip.
pub fn e2e_required() -> bool {
    std::env::var("ICECAST_BALANCER_E2E").is_ok_and(|v| v == "required")
}

pub fn skip(reason: &str) {
    if e2e_required() {
        panic!("ICECAST_BALANCER_E2E=required but {reason}");
    }
    eprintln!("SKIP: {reason}");
}

pub struct Icecast {
    pub port: u16,
    pub source_password: String,
    child: Option<tokio::process::Child>,
    dir: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Icecast {
    /// Starts a relay with the given mounts and their max-listeners (`None`:
    /// no limit). `None` when icecast2 is not installed (after printing why).
    pub async fn start(mounts: &[(&str, Option<u32>)]) -> Option<Icecast> {
        Self::start_with(mounts, true).await
    }

    /// `start`, optionally without the project's load.xsl (a relay the
    /// balancer can read only through Icecast's own status-json.xsl).
    pub async fn start_with(mounts: &[(&str, Option<u32>)], load_xsl: bool) -> Option<Icecast> {
        if !Path::new(ICECAST).exists() {
            skip("icecast2 is not installed (apt-get install icecast2)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web");
        copy_dir(Path::new(WEBROOT), &web);
        if load_xsl {
            std::fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("xsl/load.xsl"),
                web.join("load.xsl"),
            )
            .unwrap();
        }
        let logs = dir.path().join("log");
        std::fs::create_dir_all(&logs).unwrap();

        // Icecast binds port 0 (a free port the kernel picks) and the port
        // is read back from the running process.
        let source_password = format!("src-{}", std::process::id());
        let mut mount_xml = String::new();
        for (name, max) in mounts {
            mount_xml.push_str(&format!("<mount><mount-name>{name}</mount-name>"));
            if let Some(max) = max {
                mount_xml.push_str(&format!("<max-listeners>{max}</max-listeners>"));
            }
            mount_xml.push_str("</mount>\n");
        }
        // Icecast refuses to run as root; <changeowner> makes it drop to the
        // user Debian's package creates, which then needs to own the files.
        let security = if is_root() {
            let owned = std::process::Command::new("chown")
                .args(["-R", "icecast2:icecast"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(owned.success(), "chown for icecast2 failed");
            "<security><chroot>0</chroot><changeowner><user>icecast2</user>\
             <group>icecast</group></changeowner></security>"
        } else {
            "<security><chroot>0</chroot></security>"
        };
        let config = format!(
            "<icecast>
  <limits><clients>200</clients><sources>20</sources><queue-size>524288</queue-size>
    <client-timeout>30</client-timeout><header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout><burst-size>65535</burst-size></limits>
  <authentication><source-password>{source_password}</source-password>
    <admin-user>admin</admin-user><admin-password>{source_password}-admin</admin-password></authentication>
  <hostname>127.0.0.1</hostname><location>test</location><admin>test@localhost</admin>
  <listen-socket><port>0</port><bind-address>127.0.0.1</bind-address></listen-socket>
  {mount_xml}
  <paths><basedir>{base}</basedir><logdir>{logs}</logdir><webroot>{web}</webroot>
    <adminroot>{ADMINROOT}</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  {security}
</icecast>
",
            base = dir.path().display(),
            logs = logs.display(),
            web = web.display(),
        );
        let config_path = dir.path().join("icecast.xml");
        std::fs::write(&config_path, config).unwrap();
        let child = tokio::process::Command::new(ICECAST)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().expect("icecast2 is running");
        let Some(port) = listening_port(pid, Duration::from_secs(10)).await else {
            panic!(
                "icecast2 did not listen within 10 s; error.log:\n{}",
                std::fs::read_to_string(logs.join("error.log")).unwrap_or_default()
            );
        };
        let relay = Icecast {
            port,
            source_password,
            child: Some(child),
            dir,
        };
        relay.wait_until_up().await;
        Some(relay)
    }

    async fn wait_until_up(&self) {
        let client = super::app::client();
        // status.xsl ships with Icecast, so relays without load.xsl are
        // judged up by the same probe.
        let probe = format!("{}/status.xsl", self.url());
        let up = eventually(Duration::from_secs(10), async || {
            let r = client.get(&probe).send().await;
            r.is_ok_and(|r| r.status() == 200)
        })
        .await;
        if up {
            return;
        }
        panic!(
            "icecast2 did not answer on port {} within 10 s; error.log:\n{}",
            self.port,
            std::fs::read_to_string(self.log_path()).unwrap_or_default()
        );
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("log/error.log")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A live source on `mount`, connected until the returned value drops.
    pub async fn push_source(&self, mount: &str) -> Source {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let auth = base64(format!("source:{}", self.source_password).as_bytes());
        let request = format!(
            "PUT {mount} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: audio/mpeg\r\nIce-Public: 0\r\nIce-Name: test\r\n\r\n",
            self.port
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
            .await
            .expect("icecast did not answer the source")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(
            answer.contains(" 200 "),
            "source refused on {mount}: {answer}"
        );
        let task = tokio::spawn(async move {
            // About two seconds at once so listeners get audio at once, then
            // real time: 44100 / 1152 ≈ 38.3 frames a second.
            let frame = silent_frame();
            let mut burst = Vec::new();
            for _ in 0..77 {
                burst.extend_from_slice(&frame);
            }
            if stream.write_all(&burst).await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 * 1152 / 44100));
            loop {
                tick.tick().await;
                if stream.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        let source = Source { task };
        // status-json.xsl, not load.xsl: some test relays have no load.xsl.
        let listed = format!("{mount}\"");
        let appeared = eventually(Duration::from_secs(10), async || {
            self.status_json().await.contains(&listed)
        })
        .await;
        assert!(appeared, "{mount} did not appear on the relay");
        source
    }

    /// The body of the relay's `path`.
    async fn page(&self, path: &str) -> String {
        let r = super::app::client().get(format!("{}{path}", self.url()));
        r.send().await.unwrap().text().await.unwrap()
    }

    async fn status_json(&self) -> String {
        self.page("/status-json.xsl").await
    }

    pub async fn load_xsl(&self) -> String {
        self.page("/load.xsl").await
    }

    /// Listeners Icecast itself counts on `mount` (0 if the mount is gone).
    pub async fn listeners(&self, mount: &str) -> u64 {
        let body = self.status_json().await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let sources = match &v["icestats"]["source"] {
            serde_json::Value::Array(a) => a.clone(),
            o @ serde_json::Value::Object(_) => vec![o.clone()],
            _ => vec![],
        };
        sources
            .iter()
            .find(|s| s["listenurl"].as_str().is_some_and(|u| u.ends_with(mount)))
            .and_then(|s| s["listeners"].as_u64())
            .unwrap_or(0)
    }

    /// The listener count once it settles on `expected`, or whatever it is
    /// after 5 s: Icecast's stats thread counts a new listener a little after
    /// the audio starts flowing, later still on a busy machine.
    pub async fn listeners_settled(&self, mount: &str, expected: u64) -> u64 {
        let mut n = 0;
        eventually(Duration::from_secs(5), async || {
            n = self.listeners(mount).await;
            n == expected
        })
        .await;
        n
    }

    /// Kills the relay abruptly, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

pub struct Source {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One MPEG-1 Layer III frame, 128 kbit/s, 44.1 kHz, joint stereo, no CRC,
/// all side information zero: decoders play it as silence.
pub fn silent_frame() -> Vec<u8> {
    let mut frame = vec![0u8; 144 * 128_000 / 44_100];
    frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x44]);
    frame
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
