//! `/api/v1`: the JSON configuration API (tokens and scopes, ETag /
//! If-Match, field errors), the OpenAPI document, the `token` commands and
//! relays that register themselves.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use icecast_balancer::domain::Slug;
use icecast_balancer::engine::announced as announce;
use icecast_balancer::store::changes;
use icecast_balancer::store::tokens::Scope;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::app::TestApp;
use crate::support::fake_relay::FakeRelay;

const BIN: &str = env!("CARGO_BIN_EXE_icecast-balancer");

/// Makes a token through the write path, as the CLI and the admin do.
async fn token(app: &TestApp, name: &str, scope: Scope, streams: &[&str]) -> String {
    let secret = icecast_balancer::users::api_token_secret();
    let streams: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
    let mut tx = app.state.begin("test").await.unwrap();
    changes::create_token(
        &mut tx,
        &Slug::parse(name).unwrap(),
        scope,
        &streams,
        &secret,
    )
    .await
    .unwrap();
    app.state.commit(tx).await.unwrap();
    secret
}

/// A request with a bearer token, an optional If-Match and JSON body.
struct Call<'a> {
    app: &'a TestApp,
    token: &'a str,
}

impl Call<'_> {
    async fn send(
        &self,
        method: Method,
        path: &str,
        if_match: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(self.token);
        if let Some(m) = if_match {
            req = req.header("if-match", m);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let text = r.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, headers, value)
    }

    async fn get(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send(Method::GET, path, None, None).await
    }

    async fn post(
        &self,
        path: &str,
        body: Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send(Method::POST, path, None, Some(body)).await
    }

    async fn put(
        &self,
        path: &str,
        if_match: Option<&str>,
        body: Value,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send(Method::PUT, path, if_match, Some(body)).await
    }

    async fn delete(
        &self,
        path: &str,
        if_match: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        self.send(Method::DELETE, path, if_match, None).await
    }
}

fn etag(h: &reqwest::header::HeaderMap) -> String {
    h.get("etag")
        .expect("an ETag")
        .to_str()
        .unwrap()
        .to_string()
}

fn fields(v: &Value) -> Vec<String> {
    v["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| f["field"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn audit_actors(app: &TestApp, kind: &str, name: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT actor FROM audit WHERE object_kind = ? AND object_name = ? ORDER BY id",
    )
    .bind(kind)
    .bind(name)
    .fetch_all(app.state.db())
    .await
    .unwrap()
}

#[tokio::test]
async fn servers_list_get_create_update_delete_with_versions() {
    let app = TestApp::spawn().await;
    let secret = token(&app, "deploy", Scope::Write, &[]).await;
    let api = Call {
        app: &app,
        token: &secret,
    };

    let (s, h, v) = api
        .post(
            "/api/v1/servers",
            json!({"name": "fra-1", "url": "http://relay1.example.com:8000", "country": "DE"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(etag(&h), "\"1\"");
    assert_eq!(h["location"], "/api/v1/servers/fra-1");
    assert_eq!(
        (v["version"].as_i64(), v["country"].as_str()),
        (Some(1), Some("DE"))
    );

    let (s, h, v) = api.get("/api/v1/servers/fra-1").await;
    assert_eq!((s, etag(&h)), (StatusCode::OK, "\"1\"".to_string()));
    assert_eq!(v["url"], "http://relay1.example.com:8000");
    let (_, _, list) = api.get("/api/v1/servers").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    let body = json!({"name": "fra-1", "url": "http://relay1.example.com:8000", "weight": 50});
    let (s, _, v) = api.put("/api/v1/servers/fra-1", None, body.clone()).await;
    assert_eq!(s, StatusCode::PRECONDITION_REQUIRED, "{v}");
    let (s, h, v) = api
        .put("/api/v1/servers/fra-1", Some("\"1\""), body.clone())
        .await;
    assert_eq!((s, etag(&h)), (StatusCode::OK, "\"2\"".to_string()), "{v}");
    assert_eq!(v["weight"], 50);

    // A second writer that read version 1 is refused and changes nothing.
    let stale = json!({"name": "fra-1", "url": "http://other.example.com"});
    let (s, h, v) = api.put("/api/v1/servers/fra-1", Some("\"1\""), stale).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{v}");
    assert_eq!(
        (v["current_version"].as_i64(), etag(&h)),
        (Some(2), "\"2\"".to_string())
    );
    let (_, _, v) = api.get("/api/v1/servers/fra-1").await;
    assert_eq!(v["url"], "http://relay1.example.com:8000");

    // Field errors as the admin form names them; a taken name is a 409.
    let bad = json!({"name": "bad name", "url": "ftp://x", "latitude": 91.0, "longitude": 0.0});
    let (s, _, v) = api.post("/api/v1/servers", bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(fields(&v), ["name", "url", "latitude"]);
    let (s, _, v) = api
        .post(
            "/api/v1/servers",
            json!({"name": "fra-1", "url": "http://x.example"}),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::CONFLICT, Some("name")),
        "{v}"
    );
    let (s, _, v) = api
        .post(
            "/api/v1/servers",
            json!({"name": "x", "url": "http://x", "colour": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["error"].as_str().unwrap().contains("colour"), "{v}");

    let (s, _, _) = api.delete("/api/v1/servers/fra-1", Some("\"1\"")).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, _, _) = api.delete("/api/v1/servers/fra-1", Some("\"2\"")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, v) = api.get("/api/v1/servers/fra-1").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(
        audit_actors(&app, "server", "fra-1").await,
        ["token:deploy"; 3]
    );
}

#[tokio::test]
async fn streams_and_mounts_through_the_api() {
    let app = TestApp::spawn().await;
    let secret = token(&app, "deploy", Scope::Write, &[]).await;
    let api = Call {
        app: &app,
        token: &secret,
    };
    for n in ["a", "b"] {
        let (s, _, v) = api
            .post(
                "/api/v1/servers",
                json!({"name": n, "url": format!("http://{n}.example.com")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let stream = json!({"name": "live", "description": "Live", "mounts": [
        {"server": "a", "mount": "/live.mp3", "max_listeners": 50}]});
    let (s, h, v) = api.post("/api/v1/streams", stream).await;
    assert_eq!(
        (s, etag(&h)),
        (StatusCode::CREATED, "\"1\"".to_string()),
        "{v}"
    );
    assert_eq!(v["mounts"][0]["max_listeners"], 50);

    // A bad mount is named under `mounts`; nothing of the stream is kept.
    let bad = json!({"name": "jazz", "mounts": [{"server": "nowhere", "mount": "/j"}]});
    let (s, _, v) = api.post("/api/v1/streams", bad).await;
    assert_eq!(
        (s, fields(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["mounts".to_string()]),
        "{v}"
    );
    assert_eq!(
        api.get("/api/v1/streams/jazz").await.0,
        StatusCode::NOT_FOUND
    );

    // Mounts by id: add, a duplicate is a 409 naming `mount`, the limit
    // changes in place, the path does not.
    let (s, h, m) = api
        .post(
            "/api/v1/mounts",
            json!({"stream": "live", "server": "b", "mount": "/live.mp3"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let id = m["id"].as_i64().unwrap();
    let path = format!("/api/v1/mounts/{id}");
    let (s, _, v) = api
        .post(
            "/api/v1/mounts",
            json!({"stream": "live", "server": "b", "mount": "/live.mp3"}),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::CONFLICT, Some("mount")),
        "{v}"
    );
    let limit = json!({"stream": "live", "server": "b", "mount": "/live.mp3", "max_listeners": 7});
    let (s, h2, v) = api.put(&path, Some(&etag(&h)), limit.clone()).await;
    assert_eq!(
        (s, v["max_listeners"].as_i64()),
        (StatusCode::OK, Some(7)),
        "{v}"
    );
    let (s, _, _) = api.put(&path, Some(&etag(&h)), limit).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let moved = json!({"stream": "live", "server": "b", "mount": "/other.mp3"});
    let (s, _, v) = api.put(&path, Some(&etag(&h2)), moved).await;
    assert_eq!(
        (s, fields(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, vec!["mount".to_string()]),
        "{v}"
    );
    let (_, _, list) = api.get("/api/v1/mounts").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        api.delete(&path, Some(&etag(&h2))).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(api.get(&path).await.0, StatusCode::NOT_FOUND);

    // The stream: an update with mounts replaces them; stale is refused.
    let (_, h, _) = api.get("/api/v1/streams/live").await;
    let update = json!({"name": "live", "require_https": true, "mounts": []});
    let (s, h2, v) = api
        .put("/api/v1/streams/live", Some(&etag(&h)), update.clone())
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (
            v["require_https"].as_bool(),
            v["mounts"].as_array().map(Vec::len)
        ),
        (Some(true), Some(0))
    );
    let (s, _, _) = api
        .put("/api/v1/streams/live", Some(&etag(&h)), update)
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (_, _, list) = api.get("/api/v1/streams").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(
        api.delete("/api/v1/streams/live", Some(&etag(&h2))).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        audit_actors(&app, "stream", "live").await,
        ["token:deploy"; 3]
    );
}

#[tokio::test]
async fn users_through_the_api_and_the_last_one_stays() {
    let app = TestApp::spawn().await;
    let secret = token(&app, "deploy", Scope::Write, &[]).await;
    let api = Call {
        app: &app,
        token: &secret,
    };
    let (s, _, v) = api
        .post("/api/v1/users", json!({"name": "bob", "password": "short"}))
        .await;
    assert_eq!(
        (s, fields(&v)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["password".to_string()]
        ),
        "{v}"
    );
    let (s, h, v) = api
        .post(
            "/api/v1/users",
            json!({"name": "bob", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(
        v.get("password_hash").is_none() && v.get("password").is_none(),
        "{v}"
    );
    let (s, _, v) = api
        .post(
            "/api/v1/users",
            json!({"name": "bob", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(
        (s, v["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );
    let (s, h2, _) = api
        .put(
            "/api/v1/users/bob",
            Some(&etag(&h)),
            json!({"password": "another long password"}),
        )
        .await;
    assert_eq!((s, etag(&h2)), (StatusCode::OK, "\"2\"".to_string()));
    let (_, _, list) = api.get("/api/v1/users").await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, ha, _) = api.get("/api/v1/users/admin").await;
    assert_eq!(
        api.delete("/api/v1/users/admin", Some(&etag(&ha))).await.0,
        StatusCode::NO_CONTENT
    );
    let (s, _, v) = api.delete("/api/v1/users/bob", Some(&etag(&h2))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().contains("last user"), "{v}");
    assert_eq!(api.get("/api/v1/users/bob").await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_whole_configuration_in_the_file_shape() {
    let app = TestApp::spawn().await;
    app.import(&crate::support::app::one_relay_config(
        "a",
        "http://a.example.com",
        "",
    ))
    .await;
    let secret = token(&app, "deploy", Scope::Write, &[]).await;
    let api = Call {
        app: &app,
        token: &secret,
    };
    let (s, h, v) = api.get("/api/v1/config").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["servers"][0]["name"], "a");
    assert_eq!(v["streams"][0]["mounts"][0]["mount"], "/live.mp3");
    let tag = etag(&h);

    let mut next = v.clone();
    next["servers"][0]["weight"] = json!(10);
    assert_eq!(
        api.put("/api/v1/config", None, next.clone()).await.0,
        StatusCode::PRECONDITION_REQUIRED
    );
    let (s, h2, r) = api.put("/api/v1/config", Some(&tag), next.clone()).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["servers_updated"], json!(["a"]));
    assert_ne!(etag(&h2), tag);
    let (s, _, v) = api.put("/api/v1/config", Some(&tag), next).await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{v}");
    assert_eq!(v["current_etag"].as_str(), Some(etag(&h2).as_str()));

    let bad = json!({"servers": [{"name": "b", "url": "gopher://b"}]});
    let (s, _, v) = api.put("/api/v1/config", Some(&etag(&h2)), bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("servers[0] \"b\": url:"),
        "{v}"
    );
    let (_, h3, _) = api.get("/api/v1/config").await;
    assert_eq!(etag(&h3), etag(&h2), "a refused PUT changed nothing");
    assert_eq!(
        audit_actors(&app, "server", "a").await,
        ["import", "token:deploy"]
    );
}

#[tokio::test]
async fn scopes_and_revoked_tokens() {
    let app = TestApp::spawn().await;
    let reader = token(&app, "dash", Scope::Read, &[]).await;
    let relay = token(&app, "relays", Scope::Announce, &["live"]).await;
    let server = json!({"name": "a", "url": "http://a.example.com"});

    let r = app.get("/api/v1/servers").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let nobody = Call {
        app: &app,
        token: "icb_not_a_token",
    };
    assert_eq!(
        nobody.get("/api/v1/servers").await.0,
        StatusCode::UNAUTHORIZED
    );

    let read = Call {
        app: &app,
        token: &reader,
    };
    assert_eq!(read.get("/api/v1/servers").await.0, StatusCode::OK);
    assert_eq!(read.get("/api/v1/config").await.0, StatusCode::OK);
    let (s, _, v) = read.post("/api/v1/servers", server.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(v["error"].as_str().unwrap().contains("scope read"), "{v}");
    let announce = Call {
        app: &app,
        token: &relay,
    };
    assert_eq!(
        announce.get("/api/v1/servers").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        announce.post("/api/v1/servers", server.clone()).await.0,
        StatusCode::FORBIDDEN
    );
    let (s, _, _) = read.get("/api/v1/servers").await;
    assert_eq!(s, StatusCode::OK);

    // Revoked: refused at once.
    let mut tx = app.state.begin("test").await.unwrap();
    changes::delete_token(&mut tx, "dash").await.unwrap();
    app.state.commit(tx).await.unwrap();
    assert_eq!(
        read.get("/api/v1/servers").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(audit_actors(&app, "token", "dash").await, ["test", "test"]);
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM servers")
        .fetch_one(app.state.db())
        .await
        .unwrap();
    assert_eq!(n, 0, "no refused request wrote anything");
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_validates() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/v1/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/api/v1/servers",
        "/api/v1/servers/{name}",
        "/api/v1/streams",
        "/api/v1/streams/{name}",
        "/api/v1/mounts",
        "/api/v1/mounts/{id}",
        "/api/v1/users",
        "/api/v1/users/{name}",
        "/api/v1/config",
        "/api/v1/relays/announce",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"].get("ServerInput").is_some());
    validate_openapi(app.dir.path(), &text);
}

/// Runs `openapi-spec-validator` (pip install openapi-spec-validator) on
/// the document; skipped with a reason when it is not installed.
fn validate_openapi(dir: &Path, text: &str) {
    let Some(validator) = crate::support::require_binary("openapi-spec-validator") else {
        return;
    };
    let file = dir.join("openapi.json");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(validator).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(db: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--database")
        .arg(db)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn token_commands_add_list_and_remove() {
    let app = TestApp::spawn().await;
    let db = app.dir.path().join("test.db");
    let out = run(&db, &["token", "add", "ci", "--scope", "write"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(secret.starts_with("icb_"), "{secret}");
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE name = 'ci'")
        .fetch_one(app.state.db())
        .await
        .unwrap();
    assert!(!stored.contains(&secret[4..]), "only a hash is stored");

    let api = Call {
        app: &app,
        token: &secret,
    };
    let (s, _, v) = api
        .post(
            "/api/v1/servers",
            json!({"name": "a", "url": "http://a.example"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(audit_actors(&app, "server", "a").await, ["token:ci"]);

    let out = run(&db, &["token", "add", "relays", "--scope", "announce"]);
    assert!(!out.status.success(), "an announce token needs streams");
    let out = run(
        &db,
        &[
            "token",
            "add",
            "relays",
            "--scope",
            "announce",
            "--streams",
            "live,jazz",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&db, &["token", "add", "ci", "--scope", "read"]);
    assert!(!out.status.success(), "names are unique");
    let list = String::from_utf8(run(&db, &["token", "list"]).stdout).unwrap();
    assert_eq!(list, "ci\twrite\nrelays\tannounce\tlive,jazz\n");
    assert!(!list.contains("icb_"));

    let out = run(&db, &["token", "remove", "ci"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(api.get("/api/v1/servers").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(audit_actors(&app, "token", "ci").await, ["cli", "cli"]);
    assert!(!run(&db, &["token", "remove", "ci"]).status.success());
}

fn announcement(name: &str, url: &str, stream: &str) -> Value {
    json!({
        "name": name, "url": url, "country": "DE", "latitude": 50.1, "longitude": 8.7,
        "max_listeners": 500,
        "mounts": [{"stream": stream, "mount": "/live.mp3", "max_listeners": 100}],
    })
}

#[tokio::test]
async fn a_relay_announces_serves_falls_silent_is_drained_then_removed() {
    let app = TestApp::spawn_with(|s| {
        s.announce.drain_after = Duration::from_secs(60);
        s.announce.remove_after = Duration::from_secs(600);
    })
    .await;
    app.import(
        "[[servers]]\nname = \"manual\"\nurl = \"http://manual.example.com\"\n\
                [[streams]]\nname = \"live\"\n[[streams]]\nname = \"other\"\n",
    )
    .await;
    let relay = FakeRelay::start(&[("/live.mp3", 3, Some(100))]).await;
    let secret = token(&app, "relays", Scope::Announce, &["live"]).await;
    let api = Call {
        app: &app,
        token: &secret,
    };

    let (s, _, v) = api
        .post(
            "/api/v1/relays/announce",
            announcement("edge-1", &relay.url, "live"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        (v["created"].as_bool(), v["drain_after_s"].as_u64()),
        (Some(true), Some(60))
    );
    assert_eq!(
        audit_actors(&app, "server", "edge-1").await,
        ["token:relays"]
    );
    let summary = app.poll().await;
    assert!(
        summary
            .servers
            .iter()
            .any(|s| s.name == "edge-1" && s.error.is_none()),
        "polled"
    );
    assert!(
        app.sent_to("live").await.starts_with(&relay.url),
        "listeners go to it"
    );

    // Again, unchanged: no audit entry, no change.
    let (s, _, v) = api
        .post(
            "/api/v1/relays/announce",
            announcement("edge-1", &relay.url, "live"),
        )
        .await;
    assert_eq!(
        (s, v["changed"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{v}"
    );
    assert_eq!(audit_actors(&app, "server", "edge-1").await.len(), 1);
    // Only its token's streams, and never a server configured by hand.
    let (s, _, v) = api
        .post(
            "/api/v1/relays/announce",
            announcement("edge-2", &relay.url, "other"),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _, v) = api
        .post(
            "/api/v1/relays/announce",
            announcement("manual", &relay.url, "live"),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let bad =
        json!({"name": "edge-3", "url": "nope", "mounts": [{"stream": "live", "mount": "x"}]});
    let (s, _, v) = api.post("/api/v1/relays/announce", bad).await;
    assert_eq!(
        (s, fields(&v)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["url".to_string(), "mounts".to_string()]
        ),
        "{v}"
    );

    // Silent past the drain time: disabled, listeners go elsewhere.
    app.advance(Duration::from_secs(30));
    assert_eq!(
        announce::expire(&app.state).await.unwrap(),
        Default::default()
    );
    app.advance(Duration::from_secs(31));
    let done = announce::expire(&app.state).await.unwrap();
    assert_eq!(done.drained, ["edge-1"]);
    let r = app.get("/icecast_balancer/live/").await;
    assert_ne!(
        r.status(),
        StatusCode::FOUND,
        "a drained relay gets no listeners"
    );
    assert!(
        announce::expire(&app.state)
            .await
            .unwrap()
            .drained
            .is_empty(),
        "drained once"
    );

    // Back when it announces again; then silent for good: drained, removed.
    api.post(
        "/api/v1/relays/announce",
        announcement("edge-1", &relay.url, "live"),
    )
    .await;
    app.poll().await;
    assert!(app.sent_to("live").await.starts_with(&relay.url));
    app.advance(Duration::from_secs(61));
    assert_eq!(
        announce::expire(&app.state).await.unwrap().drained,
        ["edge-1"]
    );
    app.advance(Duration::from_secs(540));
    assert_eq!(
        announce::expire(&app.state).await.unwrap().removed,
        ["edge-1"]
    );
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM servers WHERE name = 'edge-1'")
        .fetch_one(app.state.db())
        .await
        .unwrap();
    assert_eq!(n, 0);
    let actors = audit_actors(&app, "server", "edge-1").await;
    assert_eq!(
        actors.last().map(String::as_str),
        Some("system"),
        "{actors:?}"
    );
}

#[tokio::test]
async fn tokens_made_and_revoked_in_the_admin() {
    use crate::support::admin::Browser;
    let app = TestApp::spawn().await;
    let mut b = Browser::logged_in(&app).await;
    assert_eq!(b.get("/admin/tokens").await.status, 200);
    let p = b
        .post(
            "/admin/tokens",
            &[("csrf_token", "wrong"), ("name", "x"), ("scope", "read")],
        )
        .await;
    assert_eq!(p.status, 403, "CSRF");
    let p = b
        .post(
            "/admin/tokens",
            &[("name", "relays"), ("scope", "announce")],
        )
        .await;
    assert_eq!(p.status, 422);
    assert!(p.body.contains("streams-error"), "{}", p.body);

    let p = b
        .post("/admin/tokens", &[("name", "deploy"), ("scope", "write")])
        .await;
    assert_eq!(p.status, 200, "{}", p.body);
    let start = p
        .body
        .find("<code id=\"new-token\">")
        .expect("the secret is shown")
        + 21;
    let secret = p.body[start..].split('<').next().unwrap().to_string();
    assert!(secret.starts_with("icb_"), "{secret}");
    let again = b.get("/admin/tokens").await;
    assert!(!again.body.contains(&secret), "shown once only");
    let p = b
        .post("/admin/tokens", &[("name", "deploy"), ("scope", "read")])
        .await;
    assert_eq!(p.status, 422, "a taken name");
    assert!(p.body.contains("name-error"), "{}", p.body);

    let api = Call {
        app: &app,
        token: &secret,
    };
    assert_eq!(api.get("/api/v1/servers").await.0, StatusCode::OK);
    let p = b.post("/admin/tokens/deploy/delete", &[]).await;
    assert_eq!(p.status, 303);
    assert_eq!(api.get("/api/v1/servers").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        audit_actors(&app, "token", "deploy").await,
        ["admin", "admin"]
    );
}

/// `contrib/announce/announce.sh`, as cron or the systemd timer runs it.
#[tokio::test]
async fn the_contrib_announce_script_registers_a_relay() {
    let Some(_) = crate::support::require_binary("curl") else {
        return;
    };
    let app = TestApp::spawn().await;
    app.import("[[streams]]\nname = \"live\"\n").await;
    let secret = token(&app, "edge", Scope::Announce, &["live"]).await;
    let token_file = app.dir.path().join("token");
    std::fs::write(&token_file, format!("{secret}\n")).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/announce/announce.sh");
    let out = tokio::process::Command::new("sh")
        .arg(script)
        .env("BALANCER_URL", app.url(""))
        .env("RELAY_NAME", "edge-7")
        .env("RELAY_URL", "http://edge7.example.net:8000")
        .env("RELAY_COUNTRY", "NL")
        .env("RELAY_LATITUDE", "52.37")
        .env("RELAY_LONGITUDE", "4.9")
        .env("RELAY_MAX_LISTENERS", "800")
        .env("RELAY_MOUNTS", "live=/live.mp3:500")
        .env("TOKEN_FILE", &token_file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reader = token(&app, "look", Scope::Read, &[]).await;
    let api = Call {
        app: &app,
        token: &reader,
    };
    let (s, _, v) = api.get("/api/v1/servers/edge-7").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["country"].as_str(), v["max_listeners"].as_i64()),
        (Some("NL"), Some(800))
    );
    let (_, _, v) = api.get("/api/v1/streams/live").await;
    assert_eq!(v["mounts"][0]["max_listeners"], 500, "{v}");
}
