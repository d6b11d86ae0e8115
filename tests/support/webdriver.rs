//! A minimal W3C WebDriver client for the browser test: starts
//! `chromedriver` on a free port and drives a headless Chromium through it.
//! Written here rather than pulling fantoccini/thirtyfour, which would bring
//! a second HTTP/TLS stack into the build for one test.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key under which an element reference is returned.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why the browser test cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    [CHROMIUM, CHROMEDRIVER]
        .iter()
        .find(|p| !Path::new(p).exists())
        .map(|p| format!("{p} is not installed (Debian: apt-get install chromium chromium-driver)"))
}

pub struct WebDriver {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    _profile: tempfile::TempDir,
}

pub struct Element(String);

impl WebDriver {
    /// Starts chromedriver and opens a headless browser session.
    pub async fn start() -> WebDriver {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = super::app::client();
        let profile = tempfile::tempdir().unwrap();
        let mut wd = WebDriver {
            driver,
            http,
            session: String::new(),
            base,
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = wd
                .http
                .get(format!("{}/status", wd.base))
                .send()
                .await
                .ok()
                .and_then(|r| r.status().is_success().then_some(()));
            if ready.is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile_arg = format!("--user-data-dir={}", wd._profile.path().display());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", profile_arg,
                ],
            },
        }}});
        let v = wd.call("POST", "/session", Some(caps)).await;
        wd.session = v["sessionId"].as_str().expect("session id").to_string();
        wd
    }

    /// One WebDriver command; panics with the driver's message on error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let r = req.send().await.expect("webdriver request");
        let status = r.status();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: {status} {}",
            v["value"]["message"]
        );
        v.get("value").cloned().unwrap_or(Value::Null)
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn current_url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn source(&self) -> String {
        self.call("GET", "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits (up to 10 s) for the page to contain `needle` and returns its
    /// source. A click that submits a form may return before the next page
    /// has loaded, so tests wait for what the next page says.
    pub async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let page = self.source().await;
            if page.contains(needle) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} did not appear on:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to 10 s) for the browser's URL to contain `needle`.
    pub async fn wait_for_url(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.current_url().await;
            if url.contains(needle) {
                return url;
            }
            assert!(Instant::now() < deadline, "still at {url}, not {needle:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching a CSS selector.
    pub async fn find(&self, css: &str) -> Element {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        Element(
            v[ELEMENT_KEY]
                .as_str()
                .unwrap_or_else(|| panic!("no element {css}: {v}"))
                .to_string(),
        )
    }

    /// Replaces a field's content with `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{}/clear", e.0), None)
            .await;
        self.call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks; see [`WebDriver::wait_for`] for what comes after a submit.
    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call("POST", &format!("/element/{}/click", e.0), None)
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.call("GET", &format!("/element/{}/text", e.0), None)
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Resizes the window, e.g. to fit a whole page into a screenshot.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", None).await;
        decode_base64(v.as_str().expect("base64 screenshot"))
    }

    pub async fn quit(mut self) {
        self.call("DELETE", "", None).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        // After quit() this is a no-op; after a panic it keeps chromedriver
        // from outliving the test.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

pub fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .map(val)
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, d)| n | u32::from(*d) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
