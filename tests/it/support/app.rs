//! The real application, in-process on a free port, with its own database.

use std::net::SocketAddr;
use std::time::Duration;

use icecast_balancer::domain::Clock;
use icecast_balancer::poll::{RoundSummary, ServerSummary};
use icecast_balancer::{AppState, Application, Settings, config_file};
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    /// Does not follow redirects, so tests can look at them.
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    /// The app's clock: tests move it forward instead of sleeping.
    pub clock: Clock,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// With `TEST_LOG=1` the apps' logs go to the test output (shown for a
/// failing test); otherwise they are discarded.
pub fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some_and(|v| v != "0") {
            let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".into());
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

pub fn client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

impl TestApp {
    /// Built-in scheduler off (tests poll explicitly), short poll timeout.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
        install_crypto();
        init_test_log();
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::new(dir.path().join("test.db"));
        settings.listen = "127.0.0.1:0".into();
        settings.poll_interval = Duration::ZERO;
        settings.poll.timeout = Duration::from_secs(2);
        settings.admin_password = Some("correct horse battery staple".into());
        // Every test listener comes from 127.0.0.1: the one-client-one-slot
        // book would see them as one client. Its own tests turn it on.
        settings.max_reservations_per_client = 0;
        // Tests poll explicitly; a full stream must not start polls of its own.
        settings.full_recheck = Duration::ZERO;
        // Tests read /api/status and /metrics right after a change; the
        // sharing has its own test.
        settings.shared_render_age = Duration::ZERO;
        configure(&mut settings);
        let clock = Clock::system();
        let app = Application::build_with_clock(settings, clock.clone())
            .await
            .expect("app builds");
        let addr = app.local_addr().expect("bound");
        let state = app.state();
        let (tx, rx) = oneshot::channel();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            state,
            client: client(),
            dir,
            clock,
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Moves the app's clock forward, as if `by` had passed.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> reqwest::Response {
        self.client.head(self.url(path)).send().await.unwrap()
    }

    /// A GET with one more header, as a proxy in front would send it.
    pub async fn get_with(&self, path: &str, name: &str, value: &str) -> reqwest::Response {
        self.get_with_headers(path, &[(name, value)]).await
    }

    /// A GET with more headers (a proxy's and a client's).
    pub async fn get_with_headers(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        for &(name, value) in headers {
            req = req.header(name, value);
        }
        req.send().await.unwrap()
    }

    /// Applies a config file the way `icecast-balancer import` does, then
    /// refreshes routing as a running server would.
    pub async fn import(&self, toml: &str) {
        let file = config_file::parse(toml).unwrap();
        config_file::apply(self.state.writer(), &file)
            .await
            .unwrap();
        self.state.refresh().await.unwrap();
    }

    /// Imports [`one_relay_config`] for the relay at `url`, named `a`.
    pub async fn import_one_relay(&self, url: &str) {
        self.import(&one_relay_config("a", url, "")).await;
    }

    /// Where a listener opening `stream` is sent (panics on anything but a 302).
    pub async fn sent_to(&self, stream: &str) -> String {
        self.get(&format!("/icecast_balancer/{stream}/"))
            .await
            .redirect_target()
    }

    pub async fn poll(&self) -> RoundSummary {
        self.state.poll_now().await.unwrap()
    }

    pub async fn api_status(&self) -> serde_json::Value {
        let body = self.get("/api/status").await.text().await.unwrap();
        serde_json::from_str(&body).unwrap()
    }

    /// `/api/status` as the holder of the configured `--api-token` sees it.
    pub async fn api_status_detailed(&self) -> serde_json::Value {
        let token = self
            .state
            .settings()
            .api_token
            .clone()
            .expect("an api token");
        let auth = format!("Bearer {token}");
        let r = self.get_with("/api/status", "authorization", &auth).await;
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.await;
        }
    }
}

/// A config of one relay `name` at `url` whose `/live.mp3` is the stream
/// `live`; `stream_extra` adds lines to the stream's table.
pub fn one_relay_config(name: &str, url: &str, stream_extra: &str) -> String {
    format!(
        "[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\n[[streams]]\nname = \"live\"\n\
         {stream_extra}mounts = [{{ server = \"{name}\", mount = \"/live.mp3\" }}]\n"
    )
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub trait SummaryExt {
    /// One server's result in a poll round, by name.
    fn server(&self, name: &str) -> &ServerSummary;
}

impl SummaryExt for RoundSummary {
    fn server(&self, name: &str) -> &ServerSummary {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} in the poll summary"))
    }
}

pub trait ResponseExt {
    /// The `Location` of a 302, or a panic naming what came instead.
    fn redirect_target(&self) -> String;
}

impl ResponseExt for reqwest::Response {
    fn redirect_target(&self) -> String {
        assert_eq!(
            self.status(),
            reqwest::StatusCode::FOUND,
            "expected a 302 from {}",
            self.url()
        );
        self.headers()
            .get("location")
            .expect("302 without Location")
            .to_str()
            .unwrap()
            .to_string()
    }
}
