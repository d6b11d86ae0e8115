//! Issue 25, against fake relays: overflow tiers (an unpolled CDN used
//! only when the own relays are full), IP versions through a trusted
//! proxy, network affinity from an ASN database, and the new fields
//! through the config file and the admin form.

use icecast_balancer::config_file;
use testkit::geoip as gen_db;

use crate::support::admin::Browser;
use crate::support::app::{ResponseExt, TestApp};
use crate::support::fake_relay::FakeRelay;

const PROXY: &str = "127.0.0.1/32";

async fn behind_proxy() -> TestApp {
    TestApp::spawn_with(|s| s.trusted_proxies = vec![PROXY.parse().unwrap()]).await
}

/// Servers (name, url, extra lines) carrying `/live.mp3` of stream `live`.
fn config(servers: &[(&str, &str, &str)]) -> String {
    let mut out = String::new();
    for (name, url, extra) in servers {
        out += &format!("[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n");
    }
    let mounts: Vec<String> = servers
        .iter()
        .map(|(name, _, _)| format!("{{ server = \"{name}\", mount = \"/live.mp3\" }}"))
        .collect();
    out + &format!(
        "[[streams]]\nname = \"live\"\nmounts = [{}]\n",
        mounts.join(", ")
    )
}

/// Where a listener at `ip` (behind the trusted proxy) is sent; `None`
/// for a 503.
async fn sent_from(app: &TestApp, ip: &str) -> Option<String> {
    let r = app
        .get_with("/icecast_balancer/live/", "x-forwarded-for", ip)
        .await;
    match r.status().as_u16() {
        302 => Some(r.redirect_target()),
        503 => None,
        other => panic!("status {other}"),
    }
}

#[tokio::test]
async fn an_unpolled_overflow_tier_takes_listeners_only_when_tier_one_is_full() {
    let own = FakeRelay::start(&[("/live.mp3", 0, Some(2))]).await;
    let app = TestApp::spawn().await;
    app.import(&config(&[
        ("own", &own.url, ""),
        (
            "cdn",
            "http://cdn.example.com",
            "tier = 2\npoll = false\nmax_listeners = 3",
        ),
    ]))
    .await;
    let summary = app.poll().await;
    assert_eq!(summary.servers.len(), 1, "the CDN is never polled");
    for _ in 0..2 {
        assert!(app.sent_to("live").await.starts_with(&own.url));
    }
    for _ in 0..3 {
        let to = app.sent_to("live").await;
        assert!(to.starts_with("http://cdn.example.com/"), "{to}");
    }
    let r = app.get("/icecast_balancer/live/").await;
    assert_eq!(
        r.status(),
        503,
        "the CDN's max_listeners counts our redirects"
    );
}

#[tokio::test]
async fn an_ipv6_listener_through_a_proxy_never_goes_to_an_ipv4_only_relay() {
    let v4 = FakeRelay::start(&[("/live.mp3", 0, Some(100))]).await;
    let dual = FakeRelay::start(&[("/live.mp3", 60, Some(100))]).await;
    let app = behind_proxy().await;
    app.import(&config(&[
        ("v4", &v4.url, "ip_versions = [\"4\"]"),
        ("dual", &dual.url, ""),
    ]))
    .await;
    app.poll().await;
    for i in 0..10 {
        let to = sent_from(&app, &format!("2001:db8::{i:x}")).await.unwrap();
        assert!(to.starts_with(&dual.url), "{to}");
    }
    let to = sent_from(&app, "192.0.2.7").await.unwrap();
    assert!(to.starts_with(&v4.url), "the emptier relay for IPv4: {to}");
    // With only the IPv4 relay, an IPv6 listener is refused, not misrouted.
    app.import(&config(&[("v4", &v4.url, "ip_versions = [\"4\"]")]))
        .await;
    assert_eq!(sent_from(&app, "2001:db8::99").await, None);
    assert!(sent_from(&app, "192.0.2.8").await.is_some());
}

#[tokio::test]
async fn clients_go_to_the_relays_of_their_network() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("GeoLite2-ASN.mmdb");
    gen_db::replace(&db, &gen_db::asn_world(gen_db::AsnSchema::GeoLite2));
    let isp = FakeRelay::start(&[("/live.mp3", 0, Some(100))]).await;
    let att = FakeRelay::start(&[("/live.mp3", 90, Some(100))]).await;
    let public = FakeRelay::start(&[("/live.mp3", 10, Some(100))]).await;
    let app = TestApp::spawn_with(|s| {
        s.trusted_proxies = vec![PROXY.parse().unwrap()];
        s.asn_db = Some(db.clone());
    })
    .await;
    app.import(&config(&[
        (
            "isp",
            &isp.url,
            &format!("only_asns = [{}]", gen_db::BERLIN_AS),
        ),
        (
            "att",
            &att.url,
            &format!("asns = [{}]", gen_db::NEW_YORK_AS),
        ),
        ("public", &public.url, ""),
    ]))
    .await;
    app.poll().await;
    for _ in 0..3 {
        let berlin = sent_from(&app, gen_db::BERLIN_V6).await.unwrap();
        assert!(berlin.starts_with(&isp.url), "{berlin}");
        let new_york = sent_from(&app, gen_db::NEW_YORK_V4).await.unwrap();
        assert!(
            new_york.starts_with(&att.url),
            "same AS, however full: {new_york}"
        );
        let tokyo = sent_from(&app, gen_db::TOKYO_V4).await.unwrap();
        assert!(tokyo.starts_with(&public.url), "{tokyo}");
    }
    let mut b = Browser::logged_in(&app).await;
    let page = b
        .get(&format!(
            "/admin/explain?stream=live&ip={}",
            gen_db::TOKYO_V4
        ))
        .await;
    assert!(
        page.body.contains("the relay serves only other networks"),
        "{}",
        page.body
    );
    let page = b
        .get(&format!(
            "/admin/explain?stream=live&ip={}",
            gen_db::NEW_YORK_V4
        ))
        .await;
    assert!(page.body.contains("AS7018"), "{}", page.body);
    assert!(page.body.contains("att lists the client"), "{}", page.body);
}

#[tokio::test]
async fn the_new_fields_survive_import_export_and_the_admin_form() {
    let app = TestApp::spawn().await;
    let file = "[[servers]]\nname = \"cdn\"\nurl = \"http://cdn.example.com\"\n\
                tier = 2\npoll = false\nip_versions = [\"6\"]\nasns = [8881, 3320]\n\
                only_asns = [3320]\nonly_prefixes = [\"192.0.2.7/24\"]\n";
    app.import(file).await;
    let exported =
        config_file::to_toml(&config_file::export(app.state.db()).await.unwrap()).unwrap();
    for line in [
        "tier = 2",
        "poll = false",
        "ip_versions = [\"6\"]",
        "asns = [3320, 8881]",
        "only_asns = [3320]",
        "only_prefixes = [\"192.0.2.0/24\"]",
    ] {
        assert!(exported.contains(line), "{line} in {exported}");
    }
    // A bad entry names its field and changes nothing.
    let bad = file.replace("tier = 2", "tier = 0");
    let e = config_file::apply(app.state.writer(), &config_file::parse(&bad).unwrap())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("tier"), "{e}");

    let mut b = Browser::logged_in(&app).await;
    b.get("/admin/servers/new").await;
    let posted = b
        .post(
            "/admin/servers/new",
            &[
                ("name", "own"),
                ("url", "http://own.example.com"),
                ("weight", "100"),
                ("enabled", "on"),
                ("tier", "1"),
                ("ip_versions", "4"),
                ("asns", "AS3320, 8881"),
                ("only_prefixes", "2001:db8::/32"),
            ],
        )
        .await;
    assert_eq!(posted.status, 303, "{}", posted.body);
    let refused = b
        .post(
            "/admin/servers/new",
            &[
                ("name", "bad"),
                ("url", "http://bad.example.com"),
                ("weight", "100"),
                ("asns", "ASx"),
                ("ip_versions", "5"),
            ],
        )
        .await;
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("an AS number"), "{}", refused.body);
    let exported =
        config_file::to_toml(&config_file::export(app.state.db()).await.unwrap()).unwrap();
    let own = &exported[exported.find("name = \"own\"").unwrap()..];
    assert!(own.contains("ip_versions = [\"4\"]"), "{own}");
    assert!(own.contains("asns = [3320, 8881]"), "{own}");
    assert!(own.contains("only_prefixes = [\"2001:db8::/32\"]"), "{own}");
    assert!(!exported.contains("\"bad\""));
}

#[tokio::test]
async fn a_bandwidth_budget_admits_exactly_budget_over_bitrate_listeners() {
    // 1.28 Mbit/s at 128 kbit/s: 10 listeners, 3 already on the relay.
    let relay = FakeRelay::start(&[("/live.mp3", 3, Some(500))]).await;
    let app = TestApp::spawn().await;
    let file = config(&[("a", &relay.url, "max_mbps = 1.28")])
        .replace("name = \"live\"", "name = \"live\"\nbitrate_kbps = 128");
    app.import(&file).await;
    app.poll().await;
    for _ in 0..7 {
        assert!(app.sent_to("live").await.starts_with(&relay.url));
    }
    let r = app.get("/icecast_balancer/live/").await;
    assert_eq!(r.status(), 503, "the budget is used up");
    let status = app.api_status().await;
    let mount = &status["streams"][0]["mounts"][0];
    assert_eq!(mount["free"], 0, "{status}");
    let exported =
        config_file::to_toml(&config_file::export(app.state.db()).await.unwrap()).unwrap();
    assert!(exported.contains("max_mbps = 1.28"), "{exported}");
    assert!(exported.contains("bitrate_kbps = 128"), "{exported}");
}

#[tokio::test]
async fn the_dashboard_shows_bandwidth_used_of_the_budget() {
    let relay = FakeRelay::start(&[("/live.mp3", 3, Some(500))]).await;
    let app = TestApp::spawn().await;
    let file = config(&[("a", &relay.url, "max_mbps = 2")])
        .replace("name = \"live\"", "name = \"live\"\nbitrate_kbps = 250");
    app.import(&file).await;
    app.poll().await;
    app.sent_to("live").await;
    let mut b = Browser::logged_in(&app).await;
    let page = b.get("/admin/").await;
    assert!(page.body.contains("1.0 / 2 Mbit/s"), "{}", page.body);
}
