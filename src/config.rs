//! Runtime settings, assembled from command-line flags and their
//! `ICECAST_BALANCER_*` environment variables by `cli`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use crate::poll::PollSettings;

/// The defaults, once: [`Settings::new`] and the command line's flags
/// (`cli`, through clap's `default_value_t`) both read them. Those of
/// polling and alerts live beside their settings and are named here.
pub mod defaults {
    pub use crate::alerts::DEFAULT_FREE_PERCENT as ALERT_FREE_PERCENT;
    pub use crate::poll::defaults as poll;

    pub const DATABASE: &str = "icecast-balancer.db";
    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const POLL_INTERVAL_S: u64 = 15;
    pub const HEADER_TIMEOUT_S: f64 = 10.0;
    pub const IDLE_TIMEOUT_S: f64 = 60.0;
    pub const REQUEST_TIMEOUT_S: f64 = 30.0;
    pub const MAX_CONNECTIONS: u64 = 1024;
    pub const MAX_CONNECTIONS_PER_CLIENT: u64 = 64;
    pub const SHUTDOWN_TIMEOUT_S: f64 = 10.0;
    pub const RESERVATION_GRACE_S: u64 = 5;
    pub const MAX_RESERVATIONS_PER_CLIENT: u64 = 4;
    pub const DOWN_RECHECK_S: u64 = 2;
    pub const FULL_RECHECK_S: u64 = 1;
    pub const CLUSTER_PREFIX: &str = "icecast-balancer";
    pub const CLUSTER_FORGET_AFTER_S: u64 = crate::cluster::DEFAULT_FORGET_AFTER_S;
    pub const GEOIP_MAX_MB: u64 = crate::geo::DEFAULT_MAX_BYTES >> 20;
    pub const ANNOUNCE_DRAIN_AFTER_S: u64 = 180;
    pub const ANNOUNCE_REMOVE_AFTER_S: u64 = 3600;
}

#[derive(Clone)]
pub struct Settings {
    pub listen: String,
    pub database: PathBuf,
    pub geoip: Option<PathBuf>,
    /// Larger GeoIP (and ASN) files are refused before they are read.
    pub geoip_max_bytes: u64,
    /// The ASN database (`--asn-db`), for the servers' `asns`/`only_asns`.
    pub asn_db: Option<PathBuf>,
    /// Zero disables the built-in scheduler (poll from cron instead).
    pub poll_interval: Duration,
    pub trusted_proxies: Vec<IpNet>,
    /// The one forwarding header the trusted proxies write.
    pub forwarded_header: ForwardedHeader,
    pub server: ServerLimits,
    pub poll_token: Option<String>,
    /// Bearer token that shows error details and poll addresses in `/api/status`.
    pub api_token: Option<String>,
    pub alerts: crate::alerts::AlertSettings,
    pub poll: PollSettings,
    /// How long a redirected listener may take to connect before a poll
    /// is expected to count it.
    pub reservation_grace: Duration,
    /// Password for the `admin` user created on first start.
    pub admin_password: Option<String>,
    /// Redis/Valkey shared by several instances (`--cluster`).
    pub cluster: Option<crate::cluster::ClusterSettings>,
    /// How long in-flight requests and background tasks get to finish
    /// after a stop signal.
    pub shutdown_timeout: Duration,
    /// Reservations one client address may hold per stream within the
    /// grace window (different players behind one address).
    pub max_reservations_per_client: usize,
    /// How often relays judged down are polled again (zero: only with
    /// the regular rounds).
    pub down_recheck: Duration,
    /// When a stream looks full: how long a listener waits for fresh
    /// counts, and the least time between such polls (zero: no waiting).
    pub full_recheck: Duration,
    /// How often the database file and its data_version are checked for
    /// changes by other processes (no flag; tests shorten it).
    pub outside_writer_check: Duration,
    /// How often the GeoIP file is checked for a replacement (a `stat`; no
    /// flag, tests shorten it).
    pub geoip_check: Duration,
    /// How long the public `/api/status` and `/metrics` renderings are
    /// shared (`web::shared`; no flag; tests that read them after each
    /// change set zero).
    pub shared_render_age: Duration,
    /// How often the per-client book forgets clients whose grace has
    /// passed, so it holds about one grace window's clients (no flag;
    /// tests shorten it).
    pub client_sweep: Duration,
    pub announce: AnnounceSettings,
}

impl Settings {
    /// Defaults as documented in the README, for a database at `database`.
    pub fn new(database: PathBuf) -> Settings {
        Settings {
            listen: defaults::LISTEN.into(),
            database,
            geoip: None,
            geoip_max_bytes: crate::geo::DEFAULT_MAX_BYTES,
            asn_db: None,
            poll_interval: Duration::from_secs(defaults::POLL_INTERVAL_S),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            server: ServerLimits::default(),
            poll_token: None,
            api_token: None,
            alerts: Default::default(),
            poll: PollSettings::default(),
            reservation_grace: Duration::from_secs(defaults::RESERVATION_GRACE_S),
            admin_password: None,
            cluster: None,
            shutdown_timeout: Duration::from_secs_f64(defaults::SHUTDOWN_TIMEOUT_S),
            max_reservations_per_client: defaults::MAX_RESERVATIONS_PER_CLIENT as usize,
            down_recheck: Duration::from_secs(defaults::DOWN_RECHECK_S),
            full_recheck: Duration::from_secs(defaults::FULL_RECHECK_S),
            outside_writer_check: Duration::from_millis(500),
            geoip_check: Duration::from_secs(2),
            shared_render_age: Duration::from_secs(1),
            client_sweep: Duration::from_secs(2),
            announce: AnnounceSettings::default(),
        }
    }

    /// How long an unreleased reservation counts: long enough to span a
    /// missed poll, short enough that reservations never pile up when
    /// polling stops. Bounded by the ring size.
    pub fn reservation_ttl_s(&self) -> u64 {
        let interval = match self.poll_interval.as_secs() {
            0 => 30,
            n => n,
        };
        (2 * interval + self.reservation_grace.as_secs())
            .clamp(30, crate::routing::reservations::SLOTS)
    }
}

/// Secrets stay out of logs and panics.
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("geoip", &self.geoip)
            .field("geoip_max_bytes", &self.geoip_max_bytes)
            .field("asn_db", &self.asn_db)
            .field("poll_interval", &self.poll_interval)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .field("server", &self.server)
            .field("poll_token", &self.poll_token.as_ref().map(|_| "<set>"))
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field("alerts", &self.alerts)
            .field("poll", &self.poll)
            .field("reservation_grace", &self.reservation_grace)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field(
                "max_reservations_per_client",
                &self.max_reservations_per_client,
            )
            .field("down_recheck", &self.down_recheck)
            .field("full_recheck", &self.full_recheck)
            .field("outside_writer_check", &self.outside_writer_check)
            .field("geoip_check", &self.geoip_check)
            .field("client_sweep", &self.client_sweep)
            .field("announce", &self.announce)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<set>"),
            )
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// Relays that register themselves (`POST /api/v1/relays/announce`).
#[derive(Debug, Clone)]
pub struct AnnounceSettings {
    /// Silence after which an announced relay is drained.
    pub drain_after: Duration,
    /// Silence after which it is removed.
    pub remove_after: Duration,
    /// How often silent relays are looked for.
    pub check_every: Duration,
}

impl Default for AnnounceSettings {
    fn default() -> Self {
        AnnounceSettings {
            drain_after: Duration::from_secs(defaults::ANNOUNCE_DRAIN_AFTER_S),
            remove_after: Duration::from_secs(defaults::ANNOUNCE_REMOVE_AFTER_S),
            check_every: Duration::from_secs(10),
        }
    }
}

/// Which header a trusted proxy writes the client's address (and scheme)
/// into. Only that one is read: the others may come from the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`, scheme from `X-Forwarded-Proto`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=…;proto=…`.
    Forwarded,
    /// `X-Real-IP`, scheme from `X-Forwarded-Proto`.
    XRealIp,
}

/// Limits on client connections, so slow or numerous clients cannot hold
/// the process's file handles or keep it alive after SIGTERM.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Time a client has to send a complete request head.
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit without a request.
    pub idle_timeout: Duration,
    /// Time from a request's first byte until its body has arrived.
    pub request_timeout: Duration,
    /// Open client connections at most; more are closed at once.
    pub max_connections: usize,
    /// Open connections from one client address at most (trusted proxies,
    /// which carry many clients, are not limited).
    pub max_per_client: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_timeout: Duration::from_secs_f64(defaults::HEADER_TIMEOUT_S),
            idle_timeout: Duration::from_secs_f64(defaults::IDLE_TIMEOUT_S),
            request_timeout: Duration::from_secs_f64(defaults::REQUEST_TIMEOUT_S),
            max_connections: defaults::MAX_CONNECTIONS as usize,
            max_per_client: defaults::MAX_CONNECTIONS_PER_CLIENT as usize,
        }
    }
}

/// Parses `10.0.0.0/8` or a bare address (a single host).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR range such as 10.0.0.0/8"))
}
