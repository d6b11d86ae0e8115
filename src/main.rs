use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use icecast_balancer::cli::{self, Cli, Command, GlobalArgs};
use icecast_balancer::domain::Clock;
use icecast_balancer::engine::{Engine, Poller};
use icecast_balancer::store::changes::Writer;
use icecast_balancer::store::require_existing;
use icecast_balancer::{Application, config_file};

fn main() -> ExitCode {
    icecast_balancer::memory::tune_allocator();
    let cli = Cli::parse_args();
    icecast_balancer::logging::init(cli.global.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    icecast_balancer::fd_limit::raise_and_log();
    let (global, command) = cli.into_parts();
    let database = &global.database;
    match command {
        Command::Serve(opts) => {
            let settings = opts.settings(&global)?;
            tell_about_icecast_relays();
            let app = Application::build(settings).await?;
            #[cfg(unix)]
            tokio::spawn(reload_geoip_on_sighup(app.state().engine().clone()));
            app.run_until_stopped(shutdown_signal()).await?;
        }
        Command::Poll(args) => {
            require_existing(database)?;
            let settings = args.settings(&global);
            let db = icecast_balancer::store::connect(database).await?;
            // Only the round: no snapshot, GeoIP or web state to keep fresh.
            let poller = Poller::new(db.clone(), settings.poll, Clock::system(), None)?;
            let summary = poller.poll().await;
            drop(poller);
            icecast_balancer::store::close(db).await;
            let summary = summary?;
            for s in &summary.servers {
                match &s.error {
                    None => println!(
                        "{:<20} {:<7} {:>5} ms  {} mounts, {} listeners ({})",
                        s.name,
                        s.state.as_str(),
                        s.latency_ms,
                        s.mounts,
                        s.listeners,
                        s.source.map_or("-", |s| s.file())
                    ),
                    Some(e) => println!(
                        "{:<20} {:<7} {:>5} ms  error: {e}",
                        s.name,
                        s.state.as_str(),
                        s.latency_ms
                    ),
                }
            }
            println!(
                "polled {} servers in {} ms, {} failed",
                summary.servers.len(),
                summary.duration_ms,
                summary.failed()
            );
        }
        Command::Import { file, from_env } => {
            let (text, from) = import_text(file.as_deref(), from_env)?;
            let parsed = config_file::parse_named(&text, &from)?;
            let db = icecast_balancer::store::connect(database).await?;
            let report = config_file::apply(&Writer::new(db.clone()), &parsed).await;
            icecast_balancer::store::close(db).await;
            print!("{}", report?);
        }
        Command::Export { secrets } => {
            let db = existing_database(&global).await?;
            print!(
                "{}",
                config_file::to_toml(&config_file::export_with(&db, secrets).await?)?
            );
        }
        Command::User(cmd) => {
            let db = existing_database(&global).await?;
            let code = cli::run_user_command(&Writer::new(db.clone()), cmd).await;
            icecast_balancer::store::close(db).await;
            return code;
        }
        Command::Token(cmd) => {
            let db = existing_database(&global).await?;
            let code = cli::run_token_command(&Writer::new(db.clone()), cmd).await;
            icecast_balancer::store::close(db).await;
            return code;
        }
        Command::Completions { shell } => cli::print_completions(shell)?,
        Command::Man { out_dir } => cli::write_man_pages(&out_dir)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Only `serve` and `import` create a database: a typo in a path must not
/// answer from (and leave behind) a new empty one.
async fn existing_database(global: &GlobalArgs) -> anyhow::Result<icecast_balancer::store::Pool> {
    require_existing(&global.database)?;
    icecast_balancer::store::connect(&global.database).await
}

/// `kill -HUP` reopens the GeoIP database, as daemons reopen their files.
#[cfg(unix)]
async fn reload_geoip_on_sighup(state: Engine) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; GeoIP reloads on file change only");
            return;
        }
    };
    while hup.recv().await.is_some() {
        if state.geo().is_configured() || state.asn().is_configured() {
            tracing::info!("SIGHUP: reloading the GeoIP database");
            state.reload_geoip().await;
        } else {
            tracing::info!("SIGHUP: no GeoIP database configured, nothing to reload");
        }
    }
}

/// Registers the stop signals at once (not when first polled), so a
/// SIGTERM that arrives right after start-up still stops gracefully.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async move {
            match term {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = term => {},
        }
        tracing::info!("shutting down");
    }
}

/// The text to import and where it came from (for messages).
fn import_text(file: Option<&std::path::Path>, from_env: bool) -> anyhow::Result<(String, String)> {
    use icecast_balancer::legacy;
    if from_env {
        let value = std::env::var(legacy::RELAYS_VAR)
            .with_context(|| format!("--from-env: {} is not set", legacy::RELAYS_VAR))?;
        let scheme = std::env::var(legacy::SCHEME_VAR).ok();
        let text = legacy::servers_toml(&value, scheme.as_deref()).map_err(anyhow::Error::msg)?;
        return Ok((text, legacy::RELAYS_VAR.to_string()));
    }
    match file {
        Some(f) if f.as_os_str() != "-" => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            Ok((text, f.display().to_string()))
        }
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok((s, "standard input".to_string()))
        }
    }
}

/// The FastAPI balancer was configured by ICECAST_RELAYS; this one reads
/// its relays from the database, so say so rather than start without a
/// word and no servers.
fn tell_about_icecast_relays() {
    use icecast_balancer::legacy;
    if let Ok(value) = std::env::var(legacy::RELAYS_VAR) {
        tracing::warn!(
            relays = legacy::hosts(&value).len(),
            "{} is set (the FastAPI balancer's relay list), but relays are read from the database; \
             import them once with `icecast-balancer import --from-env`, then add each stream's mounts",
            legacy::RELAYS_VAR
        );
    }
}
