//! Command line: `serve` (default), `poll`, `import`, `export`, `user`.
//! Every flag also reads `ICECAST_BALANCER_<FLAG>` from the environment.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::config::{Settings, parse_cidr};
use crate::domain::Slug;
use crate::store::changes::{self, Actor, Writer};
use crate::{store, users};

#[derive(Debug, Parser)]
#[command(
    name = "icecast-balancer",
    version,
    about = "HTTP redirect balancer for Icecast relays"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub opts: Options,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server and the built-in poll scheduler (the default).
    Serve,
    /// Poll every server once (disabled ones too, to watch them drain), print a summary, and exit.
    Poll,
    /// Apply a TOML config file: create or update by name, all or nothing.
    Import { file: PathBuf },
    /// Print the configuration in the import format.
    Export,
    /// Manage admin users.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the password is read from standard input.
    Add { name: String },
    /// Change a user's password, read from standard input.
    Passwd { name: String },
    /// List users.
    List,
    /// Remove a user.
    Remove { name: String },
}

#[derive(Debug, Args)]
pub struct Options {
    /// Address to serve HTTP on.
    #[arg(
        long,
        global = true,
        env = "ICECAST_BALANCER_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: String,
    /// SQLite database file, created and migrated on start.
    #[arg(
        long,
        global = true,
        env = "ICECAST_BALANCER_DATABASE",
        default_value = "icecast-balancer.db"
    )]
    pub database: PathBuf,
    /// MaxMind-format GeoIP database (City schema or ip-location-db schema).
    #[arg(long, global = true, env = "ICECAST_BALANCER_GEOIP")]
    pub geoip: Option<PathBuf>,
    /// Seconds between polls; 0 disables the built-in scheduler.
    #[arg(
        long,
        global = true,
        env = "ICECAST_BALANCER_POLL_INTERVAL",
        default_value_t = 15
    )]
    pub poll_interval: u64,
    /// Proxies whose X-Forwarded-For / Forwarded / X-Forwarded-Proto are believed (CIDR list).
    #[arg(long, global = true, env = "ICECAST_BALANCER_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_cidr)]
    pub trusted_proxies: Vec<IpNet>,
    /// Bearer token that enables POST /icecast_balancer/poll.
    #[arg(
        long,
        global = true,
        env = "ICECAST_BALANCER_POLL_TOKEN",
        hide_env_values = true
    )]
    pub poll_token: Option<String>,
    /// Seconds a relay may take to answer a poll.
    #[arg(long, global = true, env = "ICECAST_BALANCER_POLL_TIMEOUT", default_value_t = 5.0, value_parser = parse_seconds)]
    pub poll_timeout: f64,
    /// Successful polls in a row before a down server is used again.
    #[arg(long, global = true, env = "ICECAST_BALANCER_RISE", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rise: u32,
    /// Failed polls in a row before a server is taken out.
    #[arg(long, global = true, env = "ICECAST_BALANCER_FALL", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub fall: u32,
    /// Seconds a redirected listener has to connect before a poll must count it.
    #[arg(long, global = true, env = "ICECAST_BALANCER_RESERVATION_GRACE", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub reservation_grace: u64,
    /// Days of per-mount listener history to keep.
    #[arg(long, global = true, env = "ICECAST_BALANCER_HISTORY_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub history_days: u64,
    /// Redis/Valkey through which several instances share configuration and slots:
    /// redis://[user:password@]host:port[/db], rediss://… (TLS) or unix:///path.sock.
    #[arg(long, global = true, env = "ICECAST_BALANCER_CLUSTER", hide_env_values = true, value_parser = crate::cluster::parse_url)]
    pub cluster: Option<String>,
    /// Prefix of every Redis key, so several balancers can share one Redis.
    #[arg(long, global = true, env = "ICECAST_BALANCER_CLUSTER_PREFIX", default_value = "icecast-balancer", value_parser = crate::cluster::parse_name)]
    pub cluster_prefix: String,
    /// This instance's name among the members and in the audit log (default: host name/listen address).
    #[arg(long, global = true, env = "ICECAST_BALANCER_CLUSTER_INSTANCE", value_parser = crate::cluster::parse_name)]
    pub cluster_instance: Option<String>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 300.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of seconds between 0 and 300"
        )),
    }
}

impl Options {
    pub fn settings(&self) -> Settings {
        let mut s = Settings::new(self.database.clone());
        s.listen = self.listen.clone();
        s.geoip = self.geoip.clone();
        s.poll_interval = Duration::from_secs(self.poll_interval);
        s.trusted_proxies = self.trusted_proxies.clone();
        s.poll_token = self.poll_token.clone().filter(|t| !t.is_empty());
        s.poll.timeout = Duration::from_secs_f64(self.poll_timeout);
        s.poll.rise = self.rise;
        s.poll.fall = self.fall;
        s.poll.history_retention = Duration::from_secs(self.history_days * 24 * 3600);
        s.reservation_grace = Duration::from_secs(self.reservation_grace);
        s.admin_password = std::env::var("ICECAST_BALANCER_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        s.cluster = self
            .cluster
            .clone()
            .map(|url| crate::cluster::ClusterSettings {
                url,
                prefix: self.cluster_prefix.clone(),
                instance: self
                    .cluster_instance
                    .clone()
                    .unwrap_or_else(|| crate::cluster::default_instance(&self.listen)),
            });
        s
    }
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
    let mut ctx = writer.begin(Actor::new("cli")).await?;
    match cmd {
        UserCommand::Add { name } => {
            let name = Slug::parse(&name).map_err(|e| anyhow::anyhow!("user name: {e}"))?;
            if store::users::find(ctx.conn(), name.as_str())
                .await?
                .is_some()
            {
                anyhow::bail!("a user named {name:?} already exists (use `user passwd`)");
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
        UserCommand::List => {
            for u in store::users::list(ctx.conn()).await? {
                println!("{}", u.name);
            }
        }
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
