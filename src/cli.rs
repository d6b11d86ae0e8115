//! Command line: `serve` (the default), `poll`, `import`, `export`, `user`,
//! `token`, `completions`. Every flag also reads `ICECAST_BALANCER_<FLAG>` from the
//! environment.
//!
//! `--database` and `--log-format` belong to every command; the other flags
//! to the commands that use them, so each command's `--help` lists only its
//! own. Flags written before the command are moved after it ([`normalize`]),
//! as they were accepted anywhere before the commands had flags of their own.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;

use crate::config::{ForwardedHeader, ServerLimits, Settings, defaults, parse_cidr};
use crate::domain::Slug;
use crate::store::changes::{self, Actor, Writer};
use crate::store::tokens::Scope;
use crate::{store, users};

#[derive(Debug, Parser)]
#[command(
    name = "icecast-balancer",
    version,
    about = "HTTP redirect balancer for Icecast relays",
    long_about = "HTTP redirect balancer for Icecast relays. With no command it serves \
                  (the same as `icecast-balancer serve`) and takes serve's flags."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub global: GlobalArgs,
    /// `serve`'s flags, for `icecast-balancer --listen X` without a command.
    #[command(
        flatten,
        next_help_heading = "Serve options (when no command is given)"
    )]
    pub serve: Options,
}

impl Cli {
    /// Parses the process's arguments (see [`normalize`]); exits with
    /// status 2 and a message on a bad flag, as clap does.
    pub fn parse_args() -> Cli {
        Cli::parse_from(normalize(std::env::args_os().collect()))
    }

    /// The command to run: `serve` when none was given.
    pub fn into_parts(self) -> (GlobalArgs, Command) {
        (
            self.global,
            self.command.unwrap_or(Command::Serve(Box::new(self.serve))),
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server and the built-in poll scheduler (the default).
    Serve(Box<Options>),
    /// Poll every server once (disabled ones too, to watch them drain), print a summary, and exit.
    Poll(PollArgs),
    /// Apply a TOML config file: create or update by name, all or nothing.
    Import {
        /// The config file (the format `export` prints); `-` reads standard input.
        #[arg(value_name = "FILE", required_unless_present = "from_env")]
        file: Option<PathBuf>,
        /// Import the relays of ICECAST_RELAYS (the FastAPI balancer's
        /// comma-separated hosts; ICECAST_RELAY_SCHEME, default http) as servers.
        #[arg(long, conflicts_with = "file")]
        from_env: bool,
    },
    /// Print the configuration in the import format.
    Export {
        /// Include the relays' callback tokens (left out by default: an
        /// export is shared and stored where secrets should not be).
        #[arg(long)]
        secrets: bool,
    },
    /// Manage admin users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the bearer tokens of the /api/v1 automation API.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (icecast-balancer.1 and one per command) into DIR.
    #[command(hide = true)]
    Man {
        /// Directory to write the pages into.
        #[arg(value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add {
        /// Login name: letters, digits, `-` and `_`.
        name: String,
    },
    /// Change a user's password, read from standard input.
    Passwd {
        /// Login name.
        name: String,
    },
    /// List users.
    List,
    /// Remove a user.
    Remove {
        /// Login name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (this once: only its hash is kept).
    Add {
        /// The token's name, as the audit log shows it (`token:NAME`).
        name: String,
        /// read: read the configuration; write: change it too; announce:
        /// register relays for --streams.
        #[arg(long, value_enum)]
        scope: TokenScope,
        /// Streams an announce token's relays may carry (comma-separated).
        #[arg(long, value_delimiter = ',')]
        streams: Vec<String>,
    },
    /// List tokens (names and scopes; the secrets are not kept).
    List,
    /// Revoke a token: requests carrying it are refused from now on.
    Remove {
        /// The token's name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenScope {
    Read,
    Write,
    Announce,
}

impl From<TokenScope> for Scope {
    fn from(s: TokenScope) -> Scope {
        match s {
            TokenScope::Read => Scope::Read,
            TokenScope::Write => Scope::Write,
            TokenScope::Announce => Scope::Announce,
        }
    }
}

/// Flags of every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// SQLite database file; `serve` and `import` create it, the other commands need it to exist.
    #[arg(
        long,
        global = true,
        env = "ICECAST_BALANCER_DATABASE",
        default_value = defaults::DATABASE
    )]
    pub database: PathBuf,
    /// Log lines as text (coloured only on a terminal) or as JSON objects, one per line.
    #[arg(
        long,
        global = true,
        env = "ICECAST_BALANCER_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How relays are polled and judged: `serve` and `poll`.
#[derive(Debug, Args)]
pub struct PollArgs {
    /// Seconds a relay may take to answer a poll.
    #[arg(long, env = "ICECAST_BALANCER_POLL_TIMEOUT", default_value_t = defaults::poll::TIMEOUT_S, value_parser = parse_seconds)]
    pub poll_timeout: f64,
    /// Successful polls in a row before a down server is used again.
    #[arg(long, env = "ICECAST_BALANCER_RISE", default_value_t = defaults::poll::RISE, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rise: u32,
    /// Failed polls in a row before a server is taken out.
    #[arg(long, env = "ICECAST_BALANCER_FALL", default_value_t = defaults::poll::FALL, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub fall: u32,
    /// Days of per-mount listener history to keep.
    #[arg(long, env = "ICECAST_BALANCER_HISTORY_DAYS", default_value_t = defaults::poll::HISTORY_DAYS, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub history_days: u64,
    /// Relays polled at the same time (bounds the sockets a round opens).
    #[arg(long, env = "ICECAST_BALANCER_POLL_CONCURRENCY", default_value_t = defaults::poll::CONCURRENCY, value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub poll_concurrency: u64,
    /// Mounts a relay may list beyond its configured ones; more are ignored.
    #[arg(long, env = "ICECAST_BALANCER_MAX_RELAY_MOUNTS", default_value_t = defaults::poll::MAX_RELAY_MOUNTS, value_parser = clap::value_parser!(u64).range(0..=100000))]
    pub max_relay_mounts: u64,
}

impl PollArgs {
    pub fn settings(&self, global: &GlobalArgs) -> Settings {
        let mut s = Settings::new(global.database.clone());
        s.poll.timeout = Duration::from_secs_f64(self.poll_timeout);
        s.poll.rise = self.rise;
        s.poll.fall = self.fall;
        s.poll.history_retention = Duration::from_secs(self.history_days * 24 * 3600);
        s.poll.concurrency = self.poll_concurrency as usize;
        s.poll.max_relay_mounts = self.max_relay_mounts as usize;
        s
    }
}

/// `serve`'s flags. A flag added here must not be `global = true`: this
/// set is flattened twice (top level and `serve`), which clap refuses for
/// global flags (the `definition_is_valid` test says so).
#[derive(Debug, Args)]
pub struct Options {
    /// Address to serve HTTP on.
    #[arg(
        long,
        env = "ICECAST_BALANCER_LISTEN",
        default_value = defaults::LISTEN
    )]
    pub listen: String,
    /// MaxMind-format GeoIP database (City schema or ip-location-db schema).
    #[arg(long, env = "ICECAST_BALANCER_GEOIP")]
    pub geoip: Option<PathBuf>,
    /// Largest GeoIP file loaded, in MiB; a larger one is refused at start and at reload.
    #[arg(long, env = "ICECAST_BALANCER_GEOIP_MAX_MB", default_value_t = defaults::GEOIP_MAX_MB, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub geoip_max_mb: u64,
    /// ASN database (GeoLite2-ASN or ip-location-db ASN), for the servers' asns / only_asns; reloaded like --geoip, limited by --geoip-max-mb.
    #[arg(long, env = "ICECAST_BALANCER_ASN_DB")]
    pub asn_db: Option<PathBuf>,
    /// Seconds between polls; 0 disables the built-in scheduler.
    #[arg(long, env = "ICECAST_BALANCER_POLL_INTERVAL", default_value_t = defaults::POLL_INTERVAL_S, value_parser = parse_whole_seconds)]
    pub poll_interval: u64,
    /// Proxies whose X-Forwarded-For / Forwarded / X-Forwarded-Proto are believed (CIDR list).
    #[arg(long, env = "ICECAST_BALANCER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,
    /// Bearer token that enables POST /icecast_balancer/poll.
    #[arg(long, env = "ICECAST_BALANCER_POLL_TOKEN", hide_env_values = true)]
    pub poll_token: Option<String>,
    /// The one header the trusted proxies write the client's address into
    /// (the scheme comes from X-Forwarded-Proto, or Forwarded's proto=).
    #[arg(long, env = "ICECAST_BALANCER_FORWARDED_HEADER", value_enum, default_value_t = ForwardedHeader::default())]
    pub forwarded_header: ForwardedHeader,
    /// Seconds a client has to send a complete request head.
    #[arg(long, env = "ICECAST_BALANCER_HEADER_TIMEOUT", default_value_t = defaults::HEADER_TIMEOUT_S, value_parser = parse_seconds)]
    pub header_timeout: f64,
    /// Seconds a keep-alive connection may stay open without a request.
    #[arg(long, env = "ICECAST_BALANCER_IDLE_TIMEOUT", default_value_t = defaults::IDLE_TIMEOUT_S, value_parser = parse_seconds)]
    pub idle_timeout: f64,
    /// Seconds a client has from the first byte of a request until its body has arrived.
    #[arg(long, env = "ICECAST_BALANCER_REQUEST_TIMEOUT", default_value_t = defaults::REQUEST_TIMEOUT_S, value_parser = parse_seconds)]
    pub request_timeout: f64,
    /// Open client connections at most; further ones are closed at once.
    #[arg(long, env = "ICECAST_BALANCER_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Open connections from one client address at most (trusted proxies are not limited).
    #[arg(long, env = "ICECAST_BALANCER_MAX_CONNECTIONS_PER_CLIENT", default_value_t = defaults::MAX_CONNECTIONS_PER_CLIENT, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections_per_client: u64,
    /// Seconds in-flight requests get after SIGTERM before the process exits.
    #[arg(long, env = "ICECAST_BALANCER_SHUTDOWN_TIMEOUT", default_value_t = defaults::SHUTDOWN_TIMEOUT_S, value_parser = parse_seconds)]
    pub shutdown_timeout: f64,
    /// File holding the poll token (first line), so it shows in no process list.
    #[arg(
        long,
        env = "ICECAST_BALANCER_POLL_TOKEN_FILE",
        conflicts_with = "poll_token"
    )]
    pub poll_token_file: Option<PathBuf>,
    /// Bearer token that shows error details and poll addresses in /api/status (an admin session sees them too).
    #[arg(long, env = "ICECAST_BALANCER_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// URL that gets a JSON POST (with a Slack/Mattermost `text`) when a relay goes down or comes back, or a stream runs low or out of free slots; repeatable (a comma-separated list in the environment).
    #[arg(long = "alert-webhook", env = "ICECAST_BALANCER_ALERT_WEBHOOK", value_delimiter = ',', value_parser = parse_webhook, hide_env_values = true)]
    pub alert_webhooks: Vec<String>,
    /// Alert when a stream's free slots fall below this percentage of its capacity.
    #[arg(long, env = "ICECAST_BALANCER_ALERT_FREE_PERCENT", default_value_t = defaults::ALERT_FREE_PERCENT, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub alert_free_percent: u8,
    #[command(flatten)]
    pub poll: PollArgs,
    /// Seconds a redirected listener has to connect before a poll must count it.
    #[arg(long, env = "ICECAST_BALANCER_RESERVATION_GRACE", default_value_t = defaults::RESERVATION_GRACE_S, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub reservation_grace: u64,
    /// Reservations one client address may hold per stream at once (players
    /// behind one NAT); a repeat from the same player takes none. 0 turns
    /// the check off (e.g. behind a proxy that hides client addresses).
    #[arg(long, env = "ICECAST_BALANCER_MAX_RESERVATIONS_PER_CLIENT", default_value_t = defaults::MAX_RESERVATIONS_PER_CLIENT, value_parser = clap::value_parser!(u64).range(0..=10))]
    pub max_reservations_per_client: u64,
    /// Seconds between re-checks of relays that are down (0: only with the regular polls).
    #[arg(long, env = "ICECAST_BALANCER_DOWN_RECHECK", default_value_t = defaults::DOWN_RECHECK_S, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub down_recheck: u64,
    /// Seconds a listener waits for fresh relay counts when a stream looks full (0: answer 503 at once).
    #[arg(long, env = "ICECAST_BALANCER_FULL_RECHECK", default_value_t = defaults::FULL_RECHECK_S, value_parser = clap::value_parser!(u64).range(0..=10))]
    pub full_recheck: u64,
    /// Redis/Valkey through which several instances share configuration and slots:
    /// redis://[user:password@]host:port[/db], rediss://… (TLS) or unix:///path.sock.
    #[arg(long, env = "ICECAST_BALANCER_CLUSTER", hide_env_values = true, value_parser = crate::cluster::parse_url)]
    pub cluster: Option<String>,
    /// Prefix of every Redis key, so several balancers can share one Redis.
    #[arg(long, env = "ICECAST_BALANCER_CLUSTER_PREFIX", default_value = defaults::CLUSTER_PREFIX, value_parser = crate::cluster::parse_name)]
    pub cluster_prefix: String,
    /// This instance's name among the members and in the audit log (default: host name/listen address).
    #[arg(long, env = "ICECAST_BALANCER_CLUSTER_INSTANCE", value_parser = crate::cluster::parse_name)]
    pub cluster_instance: Option<String>,
    /// Seconds a cluster member not heard from still counts (its share of free slots held back); an instance cut off from Redis this long stops giving away slots of limited mounts.
    #[arg(long, env = "ICECAST_BALANCER_CLUSTER_FORGET_AFTER", default_value_t = defaults::CLUSTER_FORGET_AFTER_S, value_parser = clap::value_parser!(u64).range(60..=604_800))]
    pub cluster_forget_after: u64,
    /// File holding the cluster's shared secret (at least 16 bytes): what instances publish in Redis is authenticated with it, and records without a valid tag are refused.
    #[arg(long, env = "ICECAST_BALANCER_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<std::path::PathBuf>,
    /// Join even when this database has servers or streams that differ from the cluster's: they are replaced by the cluster's (without it, such a database stays out of the shared configuration).
    #[arg(long, env = "ICECAST_BALANCER_CLUSTER_JOIN_REPLACE_LOCAL")]
    pub cluster_join_replace_local: bool,
    /// Seconds without an announcement after which a relay that registered itself is drained.
    #[arg(long, env = "ICECAST_BALANCER_ANNOUNCE_DRAIN_AFTER", default_value_t = defaults::ANNOUNCE_DRAIN_AFTER_S, value_parser = clap::value_parser!(u64).range(10..=86400))]
    pub announce_drain_after: u64,
    /// Seconds without an announcement after which a relay that registered itself is removed.
    #[arg(long, env = "ICECAST_BALANCER_ANNOUNCE_REMOVE_AFTER", default_value_t = defaults::ANNOUNCE_REMOVE_AFTER_S, value_parser = clap::value_parser!(u64).range(10..=31_536_000))]
    pub announce_remove_after: u64,
}

fn parse_webhook(s: &str) -> Result<String, String> {
    crate::domain::HttpUrl::parse(s.trim())
        .map(|u| u.as_str().to_string())
        .map_err(|e| format!("{s:?}: {e}"))
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 300.0 => Ok(v),
        Ok(_) => Err(format!(
            "{s} is out of range: give more than 0 and at most 300 seconds (e.g. 5 or 0.5)"
        )),
        Err(_) => Err(format!("{s:?} is not a number of seconds (e.g. 5 or 0.5)")),
    }
}

/// Whole seconds, with a message a person can act on.
fn parse_whole_seconds(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("{s:?} is not a whole number of seconds (e.g. 15; 0 turns it off)"))
}

impl Options {
    pub fn settings(&self, global: &GlobalArgs) -> anyhow::Result<Settings> {
        let mut s = self.poll.settings(global);
        s.listen = self.listen.clone();
        s.geoip = self.geoip.clone();
        s.geoip_max_bytes = self.geoip_max_mb << 20;
        s.asn_db = self.asn_db.clone();
        s.poll_interval = Duration::from_secs(self.poll_interval);
        s.trusted_proxies = self.trusted_proxies.clone();
        s.poll_token = self.poll_token()?;
        s.api_token = self.api_token.clone().filter(|t| !t.is_empty());
        s.forwarded_header = self.forwarded_header;
        s.server = ServerLimits {
            header_timeout: Duration::from_secs_f64(self.header_timeout),
            idle_timeout: Duration::from_secs_f64(self.idle_timeout),
            request_timeout: Duration::from_secs_f64(self.request_timeout),
            max_connections: self.max_connections as usize,
            max_per_client: self.max_connections_per_client as usize,
        };
        s.shutdown_timeout = Duration::from_secs_f64(self.shutdown_timeout);
        s.reservation_grace = Duration::from_secs(self.reservation_grace);
        s.max_reservations_per_client = self.max_reservations_per_client as usize;
        s.down_recheck = Duration::from_secs(self.down_recheck);
        s.full_recheck = Duration::from_secs(self.full_recheck);
        s.alerts.webhooks = self.alert_webhooks.clone();
        s.alerts.free_percent = self.alert_free_percent;
        s.admin_password = std::env::var("ICECAST_BALANCER_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        s.cluster = self.cluster_settings()?;
        if self.announce_remove_after < self.announce_drain_after {
            anyhow::bail!(
                "--announce-remove-after ({} s) must not be shorter than --announce-drain-after ({} s)",
                self.announce_remove_after,
                self.announce_drain_after
            );
        }
        s.announce.drain_after = Duration::from_secs(self.announce_drain_after);
        s.announce.remove_after = Duration::from_secs(self.announce_remove_after);
        Ok(s)
    }

    fn cluster_settings(&self) -> anyhow::Result<Option<crate::cluster::ClusterSettings>> {
        let Some(url) = self.cluster.clone() else {
            return Ok(None);
        };
        let secret = match &self.cluster_secret_file {
            Some(p) => {
                Some(crate::cluster::auth::Secret::from_file(p).map_err(|e| anyhow::anyhow!(e))?)
            }
            None => None,
        };
        Ok(Some(crate::cluster::ClusterSettings {
            url,
            prefix: self.cluster_prefix.clone(),
            instance: self
                .cluster_instance
                .clone()
                .unwrap_or_else(|| crate::cluster::default_instance(&self.listen)),
            forget_after: std::time::Duration::from_secs(self.cluster_forget_after),
            secret,
            join_replace_local: self.cluster_join_replace_local,
        }))
    }

    /// The poll token from its file or the environment. On the command
    /// line it is visible to every local user in `ps`: still accepted, with
    /// a warning.
    fn poll_token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.poll_token_file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("cannot read --poll-token-file {}: {e}", path.display())
            })?;
            let token = text.lines().next().unwrap_or("").trim().to_string();
            if token.is_empty() {
                anyhow::bail!("--poll-token-file {} is empty", path.display());
            }
            return Ok(Some(token));
        }
        let on_command_line =
            std::env::args().any(|a| a == "--poll-token" || a.starts_with("--poll-token="));
        if on_command_line {
            tracing::warn!(
                "--poll-token on the command line is visible in the process list; use \
                 --poll-token-file or ICECAST_BALANCER_POLL_TOKEN instead"
            );
        }
        Ok(self.poll_token.clone().filter(|t| !t.is_empty()))
    }
}

/// Moves flags written before the command to just after it:
/// `icecast-balancer --rise 3 poll` becomes `icecast-balancer poll --rise 3`.
/// Without a command (serve) or with none recognised, nothing moves.
pub(crate) fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let cmd = Cli::command();
    let takes_value = |long: &str| {
        cmd.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .is_some_and(|a| a.get_action().takes_values())
    };
    let mut i = 1;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        if arg == "--" {
            return args;
        }
        if let Some(long) = arg.strip_prefix("--") {
            i += if !long.contains('=') && takes_value(long) {
                2
            } else {
                1
            };
        } else if arg.starts_with('-') {
            i += 1;
        } else {
            if i == 1 || cmd.find_subcommand(arg).is_none() {
                return args;
            }
            let mut out = Vec::with_capacity(args.len());
            out.push(args[0].clone());
            out.push(args[i].clone());
            out.extend_from_slice(&args[1..i]);
            out.extend_from_slice(&args[i + 1..]);
            return out;
        }
    }
    args
}

/// Writes `icecast-balancer.1` and `icecast-balancer-<command>.1` pages.
pub fn write_man_pages(dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    write_man_page(dir, &cmd, "icecast-balancer")?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("icecast-balancer-{}", sub.get_name());
        write_man_page(dir, &sub.clone().name(name.clone()), &name)?;
    }
    Ok(())
}

fn write_man_page(dir: &std::path::Path, cmd: &clap::Command, name: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(&path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// Prints the completion script for `shell` to standard output.
pub fn print_completions(shell: clap_complete::Shell) -> std::io::Result<()> {
    use std::io::Write;
    // Into memory first: clap_complete panics on a write error (`| head`).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "icecast-balancer", &mut script);
    std::io::stdout().write_all(&script)
}

/// Reads a password: twice without echo on a terminal, one line otherwise.
fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let ask = |prompt: &str| -> anyhow::Result<String> {
        eprint!("{prompt}");
        std::io::stderr().flush()?;
        let _ = std::process::Command::new("stty").arg("-echo").status();
        let mut line = String::new();
        let read = stdin.lock().read_line(&mut line);
        let _ = std::process::Command::new("stty").arg("echo").status();
        eprintln!();
        read?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    };
    let first = ask("Password: ")?;
    let second = ask("Again: ")?;
    if first != second {
        anyhow::bail!("the passwords differ");
    }
    Ok(first)
}

/// `icecast-balancer user …`: every change goes through the write path
/// (actor "cli"), so it is audited and reaches a running server.
pub async fn run_user_command(writer: &Writer, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    if let UserCommand::List = cmd {
        // A read: no write lock.
        for u in store::users::list(&mut *writer.pool().acquire().await?).await? {
            println!("{}", u.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut ctx = writer.begin(Actor::new("cli")).await?;
    match cmd {
        UserCommand::Add { name } => {
            let name = Slug::parse(&name).map_err(|e| anyhow::anyhow!("user name: {e}"))?;
            if store::users::find(ctx.conn(), name.as_str())
                .await?
                .is_some()
            {
                anyhow::bail!("a user named \"{name}\" already exists (use `user passwd {name}`)");
            }
            let password = read_password()?;
            users::check_password(&password)?;
            changes::create_user(&mut ctx, name.as_str(), &users::hash_password(&password)?)
                .await?;
            writer.commit(ctx).await?;
            println!("user {name} added");
        }
        UserCommand::Passwd { name } => {
            if store::users::find(ctx.conn(), &name).await?.is_none() {
                anyhow::bail!("no user named {name:?}");
            }
            let password = read_password()?;
            users::check_password(&password)?;
            changes::set_password(&mut ctx, &name, &users::hash_password(&password)?).await?;
            writer.commit(ctx).await?;
            println!("password of {name} changed; its sessions were ended");
        }
        // Answered above, without the write lock.
        UserCommand::List => {}
        UserCommand::Remove { name } => {
            changes::delete_user(&mut ctx, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            writer.commit(ctx).await?;
            println!("user {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `icecast-balancer token …`: through the write path (actor "cli").
pub async fn run_token_command(writer: &Writer, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::List => {
            for t in store::tokens::list(&mut *writer.pool().acquire().await?).await? {
                match t.streams.as_deref() {
                    Some(s) => println!("{}\t{}\t{s}", t.name, t.scope),
                    None => println!("{}\t{}", t.name, t.scope),
                }
            }
        }
        TokenCommand::Add {
            name,
            scope,
            streams,
        } => {
            let (name, streams) = store::tokens::check(&name, scope.into(), &streams)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let secret = users::api_token_secret();
            let mut ctx = writer.begin(Actor::new("cli")).await?;
            changes::create_token(&mut ctx, &name, scope.into(), &streams, &secret)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            writer.commit(ctx).await?;
            eprintln!("token {name} added; it is shown this once:");
            println!("{secret}");
        }
        TokenCommand::Remove { name } => {
            let mut ctx = writer.begin(Actor::new("cli")).await?;
            changes::delete_token(&mut ctx, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            writer.commit(ctx).await?;
            println!("token {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clap and `Settings::new` read the same constants: serving with no
    /// flag at all gives the documented defaults.
    #[test]
    fn no_flags_give_the_settings_defaults() {
        let (global, command) = Cli::parse_from(["ib"]).into_parts();
        let Command::Serve(opts) = command else {
            panic!("serve is the default command");
        };
        let from_flags = opts.settings(&global).unwrap();
        let defaults = Settings::new(PathBuf::from(defaults::DATABASE));
        assert_eq!(format!("{from_flags:?}"), format!("{defaults:?}"));
    }

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_before_the_command_move_after_it() {
        assert_eq!(
            normalize(args("ib --database x.db --rise 3 poll --fall 2")),
            args("ib poll --database x.db --rise 3 --fall 2")
        );
        assert_eq!(
            normalize(args("ib --listen=127.0.0.1:1 serve")),
            args("ib serve --listen=127.0.0.1:1")
        );
        assert_eq!(
            normalize(args("ib --database x.db user add alice")),
            args("ib user --database x.db add alice")
        );
    }

    #[test]
    fn nothing_moves_without_a_command() {
        for a in [
            "ib --listen 127.0.0.1:1",
            "ib serve --listen poll",
            "ib",
            "ib -- poll",
        ] {
            assert_eq!(normalize(args(a)), args(a));
        }
        // A flag's value that looks like a command is not one.
        let a = args("ib --database poll");
        assert_eq!(normalize(a.clone()), a);
    }

    #[test]
    fn no_command_means_serve_with_its_flags() {
        let cli = Cli::parse_from(normalize(args("ib --listen 127.0.0.1:9 --rise 4")));
        let (_, cmd) = cli.into_parts();
        let Command::Serve(o) = cmd else {
            panic!("not serve")
        };
        assert_eq!((o.listen.as_str(), o.poll.rise), ("127.0.0.1:9", 4));
    }

    #[test]
    fn flags_before_serve_count() {
        let cli = Cli::parse_from(normalize(args("ib --listen 127.0.0.1:9 serve --fall 3")));
        let (_, Command::Serve(o)) = cli.into_parts() else {
            panic!("not serve")
        };
        assert_eq!((o.listen.as_str(), o.poll.fall), ("127.0.0.1:9", 3));
    }

    #[test]
    fn alert_webhooks_repeat_and_must_be_urls() {
        let cli = Cli::parse_from(args(
            "ib serve --alert-webhook http://a.example/h --alert-webhook https://b.example/h --alert-free-percent 25",
        ));
        let (g, Command::Serve(o)) = cli.into_parts() else {
            panic!("not serve")
        };
        let s = o.settings(&g).unwrap();
        assert_eq!(
            s.alerts.webhooks,
            ["http://a.example/h", "https://b.example/h"]
        );
        assert_eq!(s.alerts.free_percent, 25);
        let bad = Cli::try_parse_from(args("ib serve --alert-webhook ftp://x")).unwrap_err();
        assert_eq!(bad.kind(), clap::error::ErrorKind::ValueValidation);
        let bad = Cli::try_parse_from(args("ib serve --alert-free-percent 101")).unwrap_err();
        assert_eq!(bad.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn a_command_refuses_another_commands_flags() {
        let err =
            Cli::try_parse_from(normalize(args("ib export --listen 127.0.0.1:9"))).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn help_lists_only_the_commands_flags() {
        let mut cmd = Cli::command();
        cmd.build();
        let help = cmd
            .find_subcommand_mut("export")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(help.contains("--database"), "{help}");
        assert!(
            !help.contains("--listen") && !help.contains("--geoip"),
            "{help}"
        );
        let poll = cmd
            .find_subcommand_mut("poll")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            poll.contains("--rise") && !poll.contains("--listen"),
            "{poll}"
        );
    }
}
