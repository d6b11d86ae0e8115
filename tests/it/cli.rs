//! The command line as an operator (or cron) uses it: the real binary.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::fake_relay::FakeRelay;

const BIN: &str = env!("CARGO_BIN_EXE_icecast-balancer");

/// `import FILE` of [`CONFIG`] into a new `b.db` in `dir`, which must
/// succeed: the database and the command's output.
fn import_config_file(dir: &Path) -> (std::path::PathBuf, Output) {
    let db = dir.join("b.db");
    let file = dir.join("config.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let out = run(&db, &["import", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    (db, out)
}

fn run(db: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .arg("--database")
        .arg(db)
        .args(args)
        .env_remove("ICECAST_BALANCER_POLL_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const CONFIG: &str = r#"
[[servers]]
name = "fra-1"
url = "http://relay1.example.com:8000"
https_url = "https://relay1.example.com"
poll_url = "http://10.0.0.5:8000"
country = "DE"
latitude = 50.11
longitude = 8.68
max_listeners = 500
weight = 150

[[servers]]
name = "nyc-1"
url = "http://relay2.example.com:8000"
enabled = false

[[streams]]
name = "live"
description = "Main programme"
fallback_url = "https://example.com/full.html"
allowed_countries = ["DE", "AT", "CH"]
allow_unknown = false

[[streams.mounts]]
server = "fra-1"
mount = "/live.mp3"

[[streams.mounts]]
server = "nyc-1"
mount = "/live.mp3"

[[streams]]
name = "talk"
"#;

#[test]
fn import_then_export_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = import_config_file(dir.path());
    let report = text(&out.stdout);
    assert!(report.contains("server created: fra-1"), "{report}");
    assert!(
        report.contains("mount added: live /live.mp3 on nyc-1"),
        "{report}"
    );

    let exported = run(&db, &["export"], None);
    assert!(exported.status.success());
    let exported = text(&exported.stdout);
    for needle in [
        "name = \"fra-1\"",
        "poll_url = \"http://10.0.0.5:8000\"",
        "allowed_countries = [",
        "allow_unknown = false",
        "enabled = false",
        "weight = 150",
    ] {
        assert!(exported.contains(needle), "missing {needle} in\n{exported}");
    }

    // export | import changes nothing.
    let again = run(&db, &["import", "-"], Some(&exported));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("nothing changed"),
        "{}",
        text(&again.stdout)
    );
    assert_eq!(text(&run(&db, &["export"], None).stdout), exported);
}

#[test]
fn bad_import_changes_nothing_and_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    assert!(run(&db, &["import", "-"], Some(CONFIG)).status.success());
    let before = text(&run(&db, &["export"], None).stdout);

    // A valid change followed by a bad entry: neither may land.
    let bad = r#"
[[servers]]
name = "fra-1"
url = "http://changed.example.com"
[[servers]]
name = "ams-1"
url = "http://relay3.example.com"
country = "Netherlands"
"#;
    // Each refusal: a failed exit, the reason on stderr.
    let refused = |file: &str| {
        let out = run(&db, &["import", "-"], Some(file));
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let err = refused(bad);
    assert!(err.contains("servers[1] \"ams-1\": country:"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(text(&run(&db, &["export"], None).stdout), before);

    // Unknown keys are refused, with the key named.
    let err = refused("[[servers]]\nname = \"x\"\nurl = \"http://x\"\nmaxlisteners = 5\n");
    assert!(err.contains("maxlisteners"), "{err}");

    // A mount on a server that exists nowhere.
    let err = refused(
        "[[streams]]\nname = \"live\"\nmounts = [{ server = \"ghost\", mount = \"/x\" }]\n",
    );
    assert!(err.contains("no server named \"ghost\""), "{err}");

    // Not TOML at all.
    refused("this is = = not toml");
    assert_eq!(text(&run(&db, &["export"], None).stdout), before);

    // A file that does not exist.
    let out = run(&db, &["import", "/nonexistent/file.toml"], None);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("cannot read /nonexistent/file.toml"));
}

/// A value of the wrong type is named in words, with the file, the entry
/// and the key; every unknown key is reported at once, not only the first.
#[test]
fn an_import_of_the_wrong_shape_says_what_and_where_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let file = dir.path().join("servers.toml");
    let refused = |content: &str| {
        std::fs::write(&file, content).unwrap();
        let out = run(&db, &["import", file.to_str().unwrap()], None);
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let err = refused(
        "[[servers]]\nname = \"r0\"\nurl = \"http://a\"\n\
         [[servers]]\nname = \"r1\"\nurl = \"http://b\"\nweight = \"heavy\"\nlatitude = \"north\"\n",
    );
    assert!(err.contains("servers.toml: "), "{err}");
    assert!(
        err.contains(r#"servers[1] "r1": weight: must be a whole number, got "heavy""#),
        "{err}"
    );
    assert!(
        err.contains(r#"servers[1] "r1": latitude: must be a number, got "north""#),
        "{err}"
    );
    assert!(!err.contains("expected"), "no serde wording: {err}");

    let err = refused(
        "colour = \"red\"\n[[servers]]\nname = \"x\"\nurl = \"http://x\"\nmaxlisteners = 5\nfoo = 1\n\
         [[streams]]\nname = \"live\"\nrequire_https = \"yes\"\nmounts = [{ server = \"x\", mount = \"/m\", limit = 3 }]\n",
    );
    for part in [
        "servers.toml: ",
        "colour: unknown key",
        r#"servers[0] "x": maxlisteners: unknown key (did you mean max_listeners?)"#,
        r#"servers[0] "x": foo: unknown key"#,
        r#"streams[0] "live": require_https: must be true or false, got "yes""#,
        r#"streams[0] "live" mounts[0]: limit: unknown key"#,
    ] {
        assert!(err.contains(part), "{part:?} missing from {err}");
    }
    assert_eq!(
        text(&run(&db, &["export"], None).stdout),
        "",
        "nothing was imported"
    );
}

#[test]
fn bad_flag_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["--poll-interval", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--poll-interval"),
        "{}",
        text(&out.stderr)
    );
    let out = Command::new(BIN)
        .args(["--trusted-proxies", "10.0.0.0/33"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("CIDR"), "{}", text(&out.stderr));
}

#[test]
fn unwritable_database_is_a_clear_error() {
    let out = Command::new(BIN)
        .args([
            "--database",
            "/nonexistent-dir/x.db",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "cannot create database /nonexistent-dir/x.db: the directory /nonexistent-dir does not exist"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn taken_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["--listen", &addr, "--database"])
        .arg(dir.path().join("b.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("cannot listen on {addr}")),
        "{}",
        text(&out.stderr)
    );
}

/// A GeoIP file that was asked for but cannot be used must stop the start:
/// running on silently without it would send listeners across the world.
#[test]
fn unreadable_geoip_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("GeoLite2-City.mmdb");
    let out = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--database"])
        .arg(dir.path().join("b.db"))
        .arg("--geoip")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("GeoLite2-City.mmdb"), "{err}");
    assert!(!err.contains("serving"), "it must not start: {err}");
}

#[test]
fn serve_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--poll-interval",
            "0",
            "--database",
        ])
        .arg(dir.path().join("b.db"))
        .env("ICECAST_BALANCER_ADMIN_PASSWORD", "not-logged-anywhere-42")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving") {
            break;
        }
    }
    assert!(log.contains("serving"), "{log}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    for line in lines.map_while(Result::ok) {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(status.success(), "exit {status:?}\n{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        !log.contains("not-logged-anywhere-42"),
        "a password reached the log:\n{log}"
    );
}

#[tokio::test]
async fn poll_command_prints_a_summary() {
    let relay = FakeRelay::start(&[("/live.mp3", 7, Some(100))]).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let config = format!(
        "[[servers]]\nname = \"good\"\nurl = \"{}\"\n[[servers]]\nname = \"dead\"\nurl = \"http://127.0.0.1:9\"\n",
        relay.url
    );
    let db2 = db.clone();
    let out = tokio::task::spawn_blocking(move || {
        assert!(run(&db2, &["import", "-"], Some(&config)).status.success());
        run(&db2, &["poll", "--poll-timeout", "2"], None)
    })
    .await
    .unwrap();
    // One relay being down is a result, not a failure to run.
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("good") && stdout.contains("1 mounts, 7 listeners"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dead") && stdout.contains("error:"),
        "{stdout}"
    );
    assert!(stdout.contains("polled 2 servers"), "{stdout}");
}

/// An empty database, made the way an operator would: an empty import.
fn new_database(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("b.db");
    let out = run(&db, &["import", "-"], Some(""));
    assert!(out.status.success(), "{}", text(&out.stderr));
    db
}

/// A mistyped path must not answer from (and leave behind) a new empty
/// database: `user add` would add a user nobody's server reads.
#[test]
fn only_serve_and_import_create_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo.db");
    for args in [
        &["export"][..],
        &["poll"],
        &["user", "list"],
        &["user", "add", "alice"],
        &["user", "remove", "alice"],
    ] {
        let out = run(&db, args, Some("s3cure-enough\n"));
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("no database at {}", db.display())) && err.contains("--database"),
            "{args:?}: {err}"
        );
        assert!(!db.exists(), "{args:?} created the database");
    }
    let out = run(&db, &["import", "-"], Some(""));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(db.exists());
    assert!(run(&db, &["export"], None).status.success());
}

#[test]
fn each_command_has_its_own_help() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).arg("--help").output().unwrap();
        assert!(out.status.success());
        text(&out.stdout)
    };
    let export = help(&["export"]);
    assert!(
        export.contains("--database") && export.contains("--log-format"),
        "{export}"
    );
    assert!(
        !export.contains("--listen") && !export.contains("--geoip"),
        "{export}"
    );
    let import = help(&["import"]);
    assert!(
        import.contains("[FILE]")
            && import.contains("standard input")
            && import.contains("--from-env"),
        "{import}"
    );
    // No command but serve lists serve's options.
    for cmd in [
        &["export"][..],
        &["import"],
        &["user", "add"],
        &["completions"],
    ] {
        let h = help(cmd);
        assert!(
            !h.contains("Serve options") && !h.contains("--poll-concurrency"),
            "{cmd:?}: {h}"
        );
    }
    let serve = help(&["serve"]);
    assert!(
        serve.contains("--listen") && serve.contains("--api-token"),
        "{serve}"
    );
    // A serve flag given to another command is an error, not ignored.
    let out = Command::new(BIN)
        .args(["export", "--listen", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Bad flags and paths are said in words a person can act on, and a
/// failed start leaves no new database behind.
#[test]
fn start_errors_are_for_people() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let said = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("--database")
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        text(&out.stderr)
    };
    let e = said(&["serve", "--poll-timeout", "0"]);
    assert!(
        e.contains("0 is out of range: give more than 0 and at most 300 seconds"),
        "{e}"
    );
    let e = said(&["serve", "--poll-interval", "abc"]);
    assert!(
        e.contains("\"abc\" is not a whole number of seconds"),
        "{e}"
    );
    assert!(!e.contains("invalid digit"), "{e}");
    let e = said(&["serve", "--geoip", "/nonexistent/city.mmdb"]);
    assert!(e.contains("GeoIP"), "{e}");
    assert!(!db.exists(), "a failed start left a new database behind");

    let out = Command::new(BIN)
        .args(["--database", "/nonexistent-dir/sub/x.db", "import", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let e = text(&out.stderr);
    assert!(
        e.contains("the directory /nonexistent-dir/sub does not exist"),
        "{e}"
    );
    assert_eq!(e.matches("unable to open").count(), 0, "{e}");
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let out = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = text(&out.stdout);
    assert!(
        script.contains("complete") && script.contains("--poll-interval"),
        "{script}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(dir.path().join("icecast-balancer.1")).unwrap();
    assert!(page.starts_with(".ie") || page.contains(".TH"), "{page}");
    assert!(page.contains("listen"));
    let export = std::fs::read_to_string(dir.path().join("icecast-balancer-export.1")).unwrap();
    assert!(export.contains("database") && !export.contains("geoip"));
}

/// Log files and cron mail get no colour codes; JSON lines parse.
#[test]
fn logs_are_plain_off_a_terminal_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let text_log = first_lines_of_serve(&db, &[]);
    assert!(!text_log.contains('\u{1b}'), "{text_log:?}");
    assert!(text_log.contains("INFO"), "{text_log}");
    let json_log = first_lines_of_serve(&db, &[("ICECAST_BALANCER_LOG_FORMAT", "json")]);
    let first = json_log.lines().next().unwrap();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert!(
        v["level"].is_string() && v["message"].is_string(),
        "{first}"
    );
}

#[test]
fn user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = new_database(dir.path());
    let out = run(&db, &["user", "add", "ops"], Some("s3cure-enough\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&db, &["user", "add", "ops"], Some("s3cure-enough\n"));
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(
        said.contains("a user named \"ops\" already exists"),
        "{said}"
    );
    assert!(!said.contains("Slug("), "a name, not a type: {said}");
    let out = run(&db, &["user", "add", "short"], Some("abc\n"));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("at least 8 characters"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&db, &["user", "add", "bad name"], Some("s3cure-enough\n"));
    assert!(
        text(&out.stderr).contains("user name:"),
        "{}",
        text(&out.stderr)
    );

    assert_eq!(text(&run(&db, &["user", "list"], None).stdout), "ops\n");
    let out = run(&db, &["user", "passwd", "ops"], Some("another-password\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(
        &db,
        &["user", "passwd", "ghost"],
        Some("another-password\n"),
    );
    assert!(!out.status.success());

    // The stored hash is argon2id and verifies the new password only.
    let hash = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT password_hash FROM users WHERE name = 'ops'")
        .output();
    if let Ok(h) = hash {
        let h = text(&h.stdout);
        if !h.is_empty() {
            assert!(h.starts_with("$argon2id$"), "{h}");
            assert!(icecast_balancer::users::verify_password(
                h.trim(),
                "another-password"
            ));
            assert!(!icecast_balancer::users::verify_password(
                h.trim(),
                "s3cure-enough"
            ));
        }
    }

    let out = run(&db, &["user", "add", "ops2"], Some("s3cure-enough\n"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run(&db, &["user", "remove", "ops"], None);
    assert!(out.status.success());
    assert_eq!(text(&run(&db, &["user", "list"], None).stdout), "ops2\n");
    assert!(!run(&db, &["user", "remove", "ops"], None).status.success());
    // The last user stays: without one nobody could log in.
    let out = run(&db, &["user", "remove", "ops2"], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ops2 is the last user"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&run(&db, &["user", "list"], None).stdout), "ops2\n");
}

/// Starts `serve`, returns its log up to the "serving" line, and stops it.
fn first_lines_of_serve(db: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--poll-interval",
        "0",
        "--database",
    ])
    .arg(db)
    .env_remove("ICECAST_BALANCER_ADMIN_PASSWORD")
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    while let Some(Ok(line)) = lines.next() {
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    log
}

#[test]
fn first_start_creates_admin_and_prints_the_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let log = first_lines_of_serve(&db, &[]);
    let line = log
        .lines()
        .find(|l| l.contains("created admin user"))
        .unwrap_or_else(|| panic!("{log}"));
    let password = line
        .split("with password ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(password.len(), 24);
    let again = first_lines_of_serve(&db, &[]);
    assert!(!again.contains("created admin user"), "{again}");
    assert!(!again.contains(password));

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let log = first_lines_of_serve(
        &db,
        &[("ICECAST_BALANCER_ADMIN_PASSWORD", "from-the-environment")],
    );
    assert!(
        log.contains(
            "created admin user \"admin\" with the password from ICECAST_BALANCER_ADMIN_PASSWORD"
        ),
        "{log}"
    );
    assert!(!log.contains("from-the-environment"));
}

/// The cookie `name` from a response's `Set-Cookie` headers.
fn set_cookie_value(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_string()
}

#[tokio::test]
async fn the_printed_first_start_password_logs_in() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("b.db");
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--poll-interval",
            "0",
            "--database",
        ])
        .arg(&db)
        .env_remove("ICECAST_BALANCER_ADMIN_PASSWORD")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut password, mut addr) = (None, None);
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.split("with password ").nth(1) {
            password = rest.split_whitespace().next().map(str::to_string);
        }
        if line.contains("serving") {
            // The address follows "127.0.0.1:" in the log line.
            let at = line
                .find("127.0.0.1:")
                .expect("address in the serving line");
            let port: String = line[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            addr = Some(format!("127.0.0.1:{port}"));
            break;
        }
    }
    let (password, addr) = (password.expect("password printed"), addr.unwrap());
    let client = crate::support::app::client();
    let base = format!("http://{addr}");

    let form = client
        .get(format!("{base}/admin/login"))
        .send()
        .await
        .unwrap();
    let login_cookie = set_cookie_value(&form, "icb_login");
    let body = form.text().await.unwrap();
    let token = crate::support::admin::scrape(&body, "login_token").unwrap();
    let r = client
        .post(format!("{base}/admin/login"))
        .header("cookie", format!("icb_login={login_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(crate::support::admin::encode(&[
            ("username", "admin"),
            ("password", &password),
            ("login_token", &token),
            ("next", "/admin/"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let session = set_cookie_value(&r, "icb_session");
    let dashboard = client
        .get(format!("{base}/admin/"))
        .header("cookie", format!("icb_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(dashboard.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_cli_command_leaves_no_unmerged_wal_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = import_config_file(dir.path());
    // A plain copy of the database file alone has the import.
    let wal = std::fs::metadata(dir.path().join("b.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the import is still in the WAL");
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let out = run(&copy, &["export"], None);
    assert!(text(&out.stdout).contains("fra-1"), "{}", text(&out.stderr));
}

/// Coming from the FastAPI balancer: its ICECAST_RELAYS is named at start
/// with the one-line import, which turns it into servers; the start-up
/// line names the admin URL and the database.
#[test]
fn icecast_relays_is_noticed_and_imported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let log = first_lines_of_serve(
        &db,
        &[(
            "ICECAST_RELAYS",
            "relay1.example.com,relay2.example.com:8000",
        )],
    );
    assert!(log.contains("ICECAST_RELAYS is set"), "{log}");
    assert!(log.contains("icecast-balancer import --from-env"), "{log}");
    assert!(
        log.contains("/admin/") && log.contains(&db.display().to_string()),
        "{log}"
    );

    let out = Command::new(BIN)
        .arg("--database")
        .arg(&db)
        .args(["import", "--from-env"])
        .env(
            "ICECAST_RELAYS",
            "relay1.example.com, relay2.example.com:8000",
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let exported = text(&run(&db, &["export"], None).stdout);
    assert!(
        exported.contains("name = \"relay1-example-com\""),
        "{exported}"
    );
    assert!(
        exported.contains("url = \"http://relay2.example.com:8000\""),
        "{exported}"
    );
    let out = Command::new(BIN)
        .arg("--database")
        .arg(&db)
        .args(["import", "--from-env"])
        .env_remove("ICECAST_RELAYS")
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("ICECAST_RELAYS is not set"),
        "{}",
        text(&out.stderr)
    );
}
