//! A logged-in browser stand-in: keeps cookies, sends our own Origin, and
//! fills in the CSRF token of the last page it saw.

use std::collections::BTreeMap;

use reqwest::header::{HeaderMap, SET_COOKIE};

use super::app::TestApp;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    pub csrf: String,
    pub origin: String,
    pub extra: Vec<(String, String)>,
}

pub fn encode(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of the form field `name` on a page.
pub fn scrape(body: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let start = body.find(&key)? + key.len();
    Some(body[start..].split('"').next()?.to_string())
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        let base = format!("http://{}", app.addr);
        Browser {
            origin: base.clone(),
            base,
            client: super::app::client(),
            cookies: BTreeMap::new(),
            csrf: String::new(),
            extra: Vec::new(),
        }
    }

    /// Logs in as `admin` and checks that it worked.
    pub async fn logged_in(app: &TestApp) -> Browser {
        let mut b = Browser::new(app);
        let p = b.login("admin", PASSWORD).await;
        assert_eq!(p.status, 303, "login failed: {}", p.body);
        b
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn absorb(&mut self, headers: &HeaderMap) {
        for c in headers.get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
    }

    async fn finish(&mut self, r: reqwest::Response) -> Page {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        self.absorb(&headers);
        let body = r.text().await.unwrap();
        if let Some(t) = scrape(&body, "csrf_token") {
            self.csrf = t;
        }
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let mut req = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header());
        for (k, v) in &self.extra {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        self.finish(r).await
    }

    /// POSTs a form; `csrf_token` is added from the last page unless given.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let csrf = self.csrf.clone();
        if !fields.iter().any(|(k, _)| *k == "csrf_token") {
            all.push(("csrf_token", &csrf));
        }
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("origin", &self.origin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encode(&all));
        for (k, v) in &self.extra {
            req = req.header(k, v);
        }
        let r = req.send().await.unwrap();
        self.finish(r).await
    }

    pub async fn login(&mut self, user: &str, password: &str) -> Page {
        self.login_then(user, password, "/admin/").await
    }

    /// Logs in through the form as a browser does, asking to go to `next`.
    pub async fn login_then(&mut self, user: &str, password: &str, next: &str) -> Page {
        let form = self.get(&format!("/admin/login?next={next}")).await;
        assert!(form.body.contains("name=\"password\""), "{}", form.body);
        let token = scrape(&form.body, "login_token").expect("login form has a token");
        self.post(
            "/admin/login",
            &[
                ("username", user),
                ("password", password),
                ("login_token", &token),
                ("next", next),
            ],
        )
        .await
    }
}
