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

/// Which Icecast: Debian's 2.4.4, or Icecast-KH built from source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    Xiph,
    Kh,
}

/// Icecast URL authentication pointing at the balancer's callback endpoint.
#[derive(Debug, Clone)]
pub struct UrlAuth {
    /// `http://…/icecast_balancer/relays/{server}/auth`
    pub url: String,
    pub user: String,
    pub token: String,
    /// Also on `<mount type="default">` (Icecast 2.4; it then asks about
    /// every request, its status pages included).
    pub default_mount: bool,
}

impl UrlAuth {
    /// The `<authentication>` block the README gives operators.
    fn xml(&self) -> String {
        format!(
            "<authentication type=\"url\">\
             <option name=\"listener_add\" value=\"{url}\"/>\
             <option name=\"listener_remove\" value=\"{url}\"/>\
             <option name=\"username\" value=\"{user}\"/>\
             <option name=\"password\" value=\"{token}\"/>\
             <option name=\"auth_header\" value=\"icecast-auth-user: 1\"/>\
             <option name=\"timeout\" value=\"5\"/>\
             </authentication>",
            url = self.url,
            user = self.user,
            token = self.token
        )
    }
}

/// How to start a relay.
#[derive(Debug, Clone)]
pub struct Options {
    pub flavour: Flavour,
    /// The project's load.xsl in the webroot (else only status-json.xsl).
    pub load_xsl: bool,
    pub auth: Option<UrlAuth>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            flavour: Flavour::Xiph,
            load_xsl: true,
            auth: None,
        }
    }
}

/// Where the binary and its web and admin roots are.
struct Install {
    binary: PathBuf,
    web: PathBuf,
    admin: PathBuf,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Debian's icecast2, or `None` after a printed skip.
fn xiph() -> Option<Install> {
    if !Path::new(ICECAST).exists() {
        skip("icecast2 is not installed (apt-get install icecast2)");
        return None;
    }
    Some(Install {
        binary: ICECAST.into(),
        web: WEBROOT.into(),
        admin: ADMINROOT.into(),
    })
}

/// The project's build directory (`CARGO_TARGET_DIR` or `target/`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The KH build script: `ICECAST_KH_BUILD` or `shared/relays/` beside the
/// clone (or beside the worktrees' directory).
fn kh_script() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ICECAST_KH_BUILD") {
        return Some(p.into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [root.join("../shared"), root.join("../../shared")]
        .into_iter()
        .map(|d| d.join("relays/build-icecast-kh.sh"))
        .find(|p| p.is_file())
}

static KH: tokio::sync::OnceCell<Result<PathBuf, String>> = tokio::sync::OnceCell::const_new();

/// Icecast-KH, built once into `target/icecast-kh` (about 20 s; the build
/// writes only there and in a temporary directory), or `None` after a
/// printed skip.
async fn kh() -> Option<Install> {
    let prefix = KH
        .get_or_init(async || {
            let prefix = target_dir().join("icecast-kh");
            if prefix.join("bin/icecast").is_file() {
                return Ok(prefix);
            }
            let script = kh_script().ok_or("the Icecast-KH build script (shared/relays/build-icecast-kh.sh) is not beside the clone; set ICECAST_KH_BUILD")?;
            let out = tokio::process::Command::new("bash")
                .arg(&script)
                .arg(&prefix)
                .output()
                .await
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() {
                return Err(format!(
                    "Icecast-KH did not build (needs build-essential pkg-config libxml2-dev \
                     libxslt1-dev libogg-dev libvorbis-dev libcurl4-openssl-dev libssl-dev):\n{}",
                    String::from_utf8_lossy(&out.stdout)
                ));
            }
            Ok(prefix)
        })
        .await;
    match prefix {
        Ok(p) => Some(Install {
            binary: p.join("bin/icecast"),
            web: p.join("share/icecast/web"),
            admin: p.join("share/icecast/admin"),
        }),
        Err(e) => {
            skip(e);
            None
        }
    }
}

impl Icecast {
    /// Starts a relay with the given mounts and their max-listeners (`None`:
    /// no limit). `None` when icecast2 is not installed (after printing why).
    pub async fn start(mounts: &[(&str, Option<u32>)]) -> Option<Icecast> {
        Self::start_opts(mounts, Options::default()).await
    }

    /// `start`, optionally without the project's load.xsl (a relay the
    /// balancer can read only through Icecast's own status-json.xsl).
    pub async fn start_with(mounts: &[(&str, Option<u32>)], load_xsl: bool) -> Option<Icecast> {
        let opts = Options {
            load_xsl,
            ..Options::default()
        };
        Self::start_opts(mounts, opts).await
    }

    pub async fn start_opts(mounts: &[(&str, Option<u32>)], opts: Options) -> Option<Icecast> {
        let install = match opts.flavour {
            Flavour::Xiph => xiph()?,
            Flavour::Kh => kh().await?,
        };
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web");
        copy_dir(&install.web, &web);
        // KH ships no status-json.xsl; the tests read listener counts
        // through it (the balancer reads load.xsl first either way).
        for file in ["status-json.xsl", "xml2json.xslt"] {
            let from = Path::new(WEBROOT).join(file);
            if opts.flavour == Flavour::Kh && from.is_file() {
                std::fs::copy(&from, web.join(file)).unwrap();
            }
        }
        if opts.load_xsl {
            std::fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("xsl/load.xsl"),
                web.join("load.xsl"),
            )
            .unwrap();
        }
        let logs = dir.path().join("log");
        std::fs::create_dir_all(&logs).unwrap();

        // Icecast binds port 0 (a free port the kernel picks) and the port
        // is read back from the running process; KH refuses port 0, so it
        // gets one that was free a moment ago.
        let port = match opts.flavour {
            Flavour::Xiph => 0,
            Flavour::Kh => free_port(),
        };
        let source_password = format!("src-{}", std::process::id());
        // A <mount> of its own does not inherit <mount type="default"> in
        // Icecast 2.4 (nor a wildcard mount in KH): the block goes in each.
        let auth = opts.auth.as_ref().map(UrlAuth::xml).unwrap_or_default();
        let mut mount_xml = String::new();
        let on_default = opts.auth.as_ref().is_some_and(|a| a.default_mount);
        if on_default && opts.flavour == Flavour::Xiph {
            mount_xml.push_str(&format!("<mount type=\"default\">{auth}</mount>\n"));
        }
        for (name, max) in mounts {
            mount_xml.push_str(&format!("<mount><mount-name>{name}</mount-name>"));
            if let Some(max) = max {
                mount_xml.push_str(&format!("<max-listeners>{max}</max-listeners>"));
            }
            mount_xml.push_str(&auth);
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
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  {mount_xml}
  <paths><basedir>{base}</basedir><logdir>{logs}</logdir><webroot>{web}</webroot>
    <adminroot>{admin}</adminroot></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  {security}
</icecast>
",
            base = dir.path().display(),
            logs = logs.display(),
            web = web.display(),
            admin = install.admin.display(),
        );
        let config_path = dir.path().join("icecast.xml");
        std::fs::write(&config_path, config).unwrap();
        let child = tokio::process::Command::new(&install.binary)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().expect("icecast is running");
        let Some(port) = listening_port(pid, Duration::from_secs(10)).await else {
            panic!(
                "{} did not listen within 10 s; error.log:\n{}",
                install.binary.display(),
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
