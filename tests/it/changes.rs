//! The single write path: every configuration change, whoever makes it,
//! leaves its audit entry, and each commit is announced once.

use icecast_balancer::store::{self, audit::AuditRow};

use crate::support::app::TestApp;

const TWO_MOUNTS: &str = r#"
[[servers]]
name = "a"
url = "http://a.example.com:8000"

[[streams]]
name = "live"
mounts = [{ server = "a", mount = "/live.mp3" }, { server = "a", mount = "/live.aac" }]
"#;

async fn audit(app: &TestApp) -> Vec<AuditRow> {
    let mut conn = app.state.db().acquire().await.unwrap();
    store::audit::page(&mut conn, 0, 100).await.unwrap()
}

fn find<'a>(rows: &'a [AuditRow], action: &str, kind: &str, name: &str) -> Option<&'a AuditRow> {
    rows.iter()
        .find(|r| r.action == action && r.object_kind == kind && r.object_name == name)
}

#[tokio::test]
async fn an_import_that_removes_a_mount_records_the_removal() {
    let app = TestApp::spawn().await;
    app.import(TWO_MOUNTS).await;
    app.import(&TWO_MOUNTS.replace(r#", { server = "a", mount = "/live.aac" }"#, ""))
        .await;
    let rows = audit(&app).await;
    let removed = find(&rows, "delete", "mount", "live /live.aac on a")
        .unwrap_or_else(|| panic!("no removal in {rows:#?}"));
    assert_eq!(removed.actor, "import");
    assert!(
        removed
            .before
            .as_deref()
            .unwrap_or("")
            .contains("/live.aac")
    );
    assert!(find(&rows, "delete", "mount", "live /live.mp3 on a").is_none());
}

#[tokio::test]
async fn a_mount_created_by_import_records_what_it_is() {
    let app = TestApp::spawn().await;
    app.import(TWO_MOUNTS).await;
    let rows = audit(&app).await;
    let created = find(&rows, "create", "mount", "live /live.mp3 on a").expect("mount audited");
    let after = created.after.as_deref().expect("an after text");
    assert!(
        after.contains("server = \"a\"") && after.contains("/live.mp3"),
        "{after}"
    );
    assert!(
        find(&rows, "create", "server", "a")
            .and_then(|r| r.after.as_ref())
            .is_some()
    );
}

#[tokio::test]
async fn each_commit_is_announced_once_with_its_changes() {
    let app = TestApp::spawn().await;
    let mut events = app.state.writer().subscribe();
    app.import(TWO_MOUNTS).await;
    let committed = events.try_recv().expect("the import was announced");
    assert_eq!(committed.actor.as_str(), "import");
    // A server, a stream and two mounts.
    assert_eq!(committed.changes.len(), 4, "{:?}", committed.changes);
    assert!(events.try_recv().is_err(), "announced once");
    // Importing the same file again changes nothing and announces nothing.
    app.import(TWO_MOUNTS).await;
    assert!(events.try_recv().is_err());
}

#[tokio::test]
async fn the_database_refuses_a_health_state_that_does_not_exist() {
    let app = TestApp::spawn().await;
    app.import(TWO_MOUNTS).await;
    let bad = sqlx::query(
        "INSERT INTO server_health (server_id, state) SELECT id, 'sideways' FROM servers",
    )
    .execute(app.state.db())
    .await;
    assert!(bad.is_err(), "a made-up health state was stored");
}
