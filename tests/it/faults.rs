//! Bad days: what happens to the files the balancer depends on (the GeoIP
//! database replaced by garbage, a FIFO, or overwritten in place) while it
//! runs. Redirects go on and the process stays up.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::app::TestApp;
use crate::support::geoip;
use icecast_balancer::Settings;
use icecast_balancer::geo::Reload;

async fn with_geoip() -> (TestApp, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.keep().join("city.mmdb");
    geoip::replace(&mmdb, &geoip::world(geoip::Schema::MaxMind));
    let path = mmdb.clone();
    let app = TestApp::spawn_with(move |s: &mut Settings| s.geoip = Some(path)).await;
    (app, mmdb)
}

fn country(app: &TestApp, ip: &str) -> Option<String> {
    app.state
        .geo()
        .lookup(ip.parse().unwrap())
        .country
        .map(|c| c.to_string())
}

/// Every address the test database knows, looked up: touches the whole
/// file, so a mapping of a truncated file would fault here.
fn look_everywhere(app: &TestApp) -> Vec<Option<String>> {
    [
        geoip::BERLIN_V4,
        geoip::BERLIN_V6,
        geoip::PARIS_V4,
        geoip::NEW_YORK_V4,
        geoip::NEW_YORK_V6,
        geoip::SYDNEY_V4,
        geoip::SYDNEY_V6,
        geoip::TOKYO_V4,
        geoip::TOKYO_V6,
    ]
    .iter()
    .map(|ip| country(app, ip))
    .collect()
}

#[tokio::test]
async fn geoip_truncated_in_place_neither_crashes_nor_loses_data() {
    let (app, mmdb) = with_geoip().await;
    let before = look_everywhere(&app);
    assert_eq!(before[0].as_deref(), Some("DE"));
    // What `cp new.mmdb city.mmdb` does first: truncate the same inode.
    let f = std::fs::OpenOptions::new().write(true).open(&mmdb).unwrap();
    f.set_len(100).unwrap();
    drop(f);
    assert_eq!(look_everywhere(&app), before);
    assert_eq!(app.state.reload_geoip().await, Reload::Failed);
    assert_eq!(look_everywhere(&app), before);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn geoip_overwritten_in_place_is_picked_up_once_complete() {
    let (app, mmdb) = with_geoip().await;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&mmdb)
        .unwrap();
    let moved = geoip::world_moved();
    f.write_all(&moved[..moved.len() / 2]).unwrap();
    f.flush().unwrap();
    assert_eq!(app.state.reload_geoip().await, Reload::Failed);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("DE"));
    f.write_all(&moved[moved.len() / 2..]).unwrap();
    drop(f);
    assert_eq!(app.state.reload_geoip().await, Reload::Reloaded);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("JP"));
}

#[tokio::test]
async fn geoip_replaced_by_garbage_keeps_the_old_data() {
    let (app, mmdb) = with_geoip().await;
    geoip::replace(&mmdb, b"<html>502 Bad Gateway</html>");
    assert_eq!(app.state.reload_geoip().await, Reload::Failed);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("DE"));
}

/// A sparse file of `gb` GiB in place of the database (no disk used).
fn huge_sparse(path: &std::path::Path, gb: u64) {
    let tmp = path.with_extension("huge");
    let f = std::fs::File::create(&tmp).unwrap();
    f.set_len(gb << 30).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn a_huge_geoip_file_is_refused_at_reload_before_it_is_read() {
    let (app, mmdb) = with_geoip().await;
    huge_sparse(&mmdb, 30);
    // Before the limit this tried to allocate 30 GiB and aborted.
    assert_eq!(app.state.reload_geoip().await, Reload::Failed);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("DE"));
    assert_eq!(app.state.reload_geoip_if_changed().await, Reload::Unchanged);
}

#[tokio::test]
async fn a_huge_geoip_file_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.path().join("city.mmdb");
    huge_sparse(&mmdb, 30);
    let mut settings = Settings::new(dir.path().join("b.db"));
    settings.listen = "127.0.0.1:0".into();
    settings.geoip = Some(mmdb);
    let e = icecast_balancer::Application::build(settings)
        .await
        .err()
        .expect("a 30 GiB GeoIP file was accepted");
    let e = format!("{e:#}");
    assert!(
        e.contains("city.mmdb") && e.contains("--geoip-max-mb"),
        "{e}"
    );
    // A lower limit refuses the real test database too.
    let small = dir.path().join("small.mmdb");
    geoip::replace(&small, &geoip::world(geoip::Schema::MaxMind));
    let mut settings = Settings::new(dir.path().join("c.db"));
    settings.listen = "127.0.0.1:0".into();
    settings.geoip = Some(small);
    settings.geoip_max_bytes = 1024;
    assert!(
        icecast_balancer::Application::build(settings)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geoip_replaced_by_a_fifo_is_refused_without_stalling() {
    let (app, mmdb) = with_geoip().await;
    let fifo = mmdb.with_extension("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    std::fs::rename(&fifo, &mmdb).unwrap();
    // Before the fix the open itself blocked (no writer ever comes), so
    // these never returned. The background check (every 2 s) asks what
    // the first one does: it may have met the FIFO first, and then this
    // sees it unchanged (a stalled background check would hold the file
    // state's lock, and this would stall too).
    let r = tokio::time::timeout(Duration::from_secs(20), app.state.reload_geoip_if_changed());
    let r = r
        .await
        .expect("the check for a changed file stalled on a FIFO");
    assert_ne!(r, Reload::Reloaded);
    let r = tokio::time::timeout(Duration::from_secs(20), app.state.reload_geoip()).await;
    assert_eq!(r.expect("the reload stalled on a FIFO"), Reload::Failed);
    assert_eq!(country(&app, geoip::BERLIN_V4).as_deref(), Some("DE"));
    // Requests go on.
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        app.client.get(app.url("/healthz")).send(),
    )
    .await
    .expect("requests stalled")
    .unwrap();
    assert_eq!(r.status(), 200);
}

// ---- the database ------------------------------------------------------

/// A small tmpfs of our own (root only); unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let why = "cannot mount a tmpfs (needs root)";
            assert!(
                std::env::var("ICECAST_BALANCER_E2E").as_deref() != Ok("required"),
                "{why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes a filler file until the disk is full.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&[0u8; 1]);
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn app_on(disk: &SmallDisk) -> (TestApp, crate::support::fake_relay::FakeRelay) {
    let db = disk.path().join("balancer.db");
    let relay = crate::support::fake_relay::FakeRelay::start(&[("/live.mp3", 1, Some(100))]).await;
    let app = TestApp::spawn_with(move |s: &mut Settings| s.database = db).await;
    app.import_one_relay(&relay.url).await;
    app.poll().await;
    (app, relay)
}

/// Polls a few rounds; how many could not run at all.
async fn failed_rounds(app: &TestApp, rounds: usize) -> usize {
    let mut failed = 0;
    for _ in 0..rounds {
        if app.state.poll_now().await.is_err() {
            failed += 1;
        }
    }
    failed
}

#[tokio::test]
async fn writes_recover_by_themselves_after_a_full_disk_is_freed() {
    let Some(disk) = SmallDisk::mount("8m") else {
        return;
    };
    let (app, relay) = app_on(&disk).await;
    let filler = disk.fill();
    assert!(
        failed_rounds(&app, 3).await > 0,
        "a full disk went unnoticed"
    );
    // Redirects never touch the database.
    app.sent_to("live").await;
    std::fs::remove_file(filler).unwrap();
    assert_eq!(failed_rounds(&app, 10).await, 0, "polls did not recover");
    // Health follows the relay again: it dies, the next poll notices.
    relay.kill();
    let round = app.poll().await;
    assert!(!round.servers[0].ok);
    assert_eq!(app.get("/icecast_balancer/live/").await.status(), 503);
}

/// `chattr` on the database and its WAL: the file system says no to
/// writes even for root (who ignores permission bits).
fn immutable(db: &std::path::Path, on: bool) -> bool {
    let flag = if on { "+i" } else { "-i" };
    let wal = db.with_extension("db-wal");
    std::process::Command::new("chattr")
        .arg(flag)
        .arg(db)
        .arg(&wal)
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn writes_recover_after_the_database_was_read_only() {
    let relay = crate::support::fake_relay::FakeRelay::start(&[("/live.mp3", 1, Some(100))]).await;
    let app = TestApp::spawn().await;
    app.import_one_relay(&relay.url).await;
    app.poll().await;
    let db = app.state.settings().database.clone();
    if !immutable(&db, true) {
        let why = "chattr +i is not available here (needs root and ext4/xfs)";
        assert!(
            std::env::var("ICECAST_BALANCER_E2E").as_deref() != Ok("required"),
            "{why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let failed = failed_rounds(&app, 3).await;
    app.sent_to("live").await;
    assert!(immutable(&db, false));
    assert!(failed > 0, "a read-only database went unnoticed");
    assert_eq!(failed_rounds(&app, 10).await, 0, "polls did not recover");
}

/// The database, its WAL and its shared-memory file made immutable (as a
/// `chmod 444` does for anyone but root) until dropped.
struct ReadOnlyFiles(Vec<PathBuf>);

impl ReadOnlyFiles {
    fn set(db: &std::path::Path) -> Option<ReadOnlyFiles> {
        let files: Vec<PathBuf> = ["db", "db-wal", "db-shm"]
            .iter()
            .map(|e| db.with_extension(e))
            .collect();
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .args(&files)
            .status()
            .is_ok_and(|s| s.success());
        let guard = ReadOnlyFiles(files);
        if !ok {
            let why = "chattr +i is not available here (needs root and ext4/xfs)";
            assert!(
                std::env::var("ICECAST_BALANCER_E2E").as_deref() != Ok("required"),
                "{why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        Some(guard)
    }
}

impl Drop for ReadOnlyFiles {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .args(&self.0)
            .status();
    }
}

#[tokio::test]
async fn writes_recover_after_database_wal_and_shm_were_read_only_during_logins() {
    use crate::support::admin::{Browser, PASSWORD};
    let relay = crate::support::fake_relay::FakeRelay::start(&[("/live.mp3", 1, Some(100))]).await;
    let app = TestApp::spawn().await;
    app.import_one_relay(&relay.url).await;
    app.poll().await;
    let db = app.state.settings().database.clone();
    let Some(read_only) = ReadOnlyFiles::set(&db) else {
        return;
    };
    let failed = failed_rounds(&app, 2).await;
    // Logins while it lasts: each takes pooled connections, and the pool
    // opens new ones (which open their WAL and shared memory read-only).
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(Browser::new(&app).login("admin", "wrong").await.status);
    }
    let failed = failed + failed_rounds(&app, 2).await;
    app.sent_to("live").await;
    drop(read_only);
    assert!(failed > 0, "a read-only database went unnoticed");
    assert!(answers.iter().all(|s| *s != 200), "{answers:?}");
    assert_eq!(failed_rounds(&app, 10).await, 0, "polls did not recover");
    let ok = Browser::new(&app).login("admin", PASSWORD).await.status;
    assert_eq!(ok, 303, "logins did not recover");
}

/// Collects what the app logs while the guard lives (the app's tasks run
/// on this test's single thread; poll rounds run on the poll thread, so
/// what they log is not collected).
pub fn capture_log() -> (
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    tracing::subscriber::DefaultGuard,
) {
    let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Sink(sink.clone()))
        .finish();
    (buf, tracing::subscriber::set_default(sub))
}

struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_deleted_database_is_reported_and_never_recreated_empty() {
    let (log, _guard) = capture_log();
    let relay = crate::support::fake_relay::FakeRelay::start(&[("/live.mp3", 1, Some(100))]).await;
    let app = TestApp::spawn().await;
    app.import_one_relay(&relay.url).await;
    app.poll().await;
    let db = app.state.settings().database.clone();
    std::fs::remove_file(&db).unwrap();
    let reported = crate::support::eventually(Duration::from_secs(10), async || {
        String::from_utf8_lossy(&log.lock().unwrap()).contains("the database file was deleted")
    })
    .await;
    assert!(reported, "the deletion was not reported");
    app.sent_to("live").await;
    // A new connection (as the pool opens after closing one) must fail
    // rather than create an empty database in its place.
    let fresh = icecast_balancer::store::watcher_connection(&db).await;
    assert!(fresh.is_err());
    assert!(
        !db.exists(),
        "an empty database was created in place of the deleted one"
    );
}
