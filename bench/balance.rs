//! Balance simulator: where listeners land, measured against relays that
//! enforce their limits. `cargo bench --bench balance -- [scenario] [options]`
//! or `bench/balance.sh`.
//!
//! Five fake relays (max-listeners 20/50/50/100/200) hold each accepted
//! listener's connection and refuse past their limit (403 like Icecast
//! 2.4, `--refuse 503` like 2.5); they answer `load.xsl` from what they
//! hold right now (`--source status-json` for Icecast's JSON, which hides
//! the limits). Listeners ask the real balancer (built in-process on port 0
//! with its own poll scheduler), follow the redirect and hold the slot for
//! an exponentially distributed time. Each comes from its own address
//! (`X-Forwarded-For` from a trusted proxy).
//!
//! Scenarios: `flash` (3x capacity in 10 s), `churn` (offered load 90% of
//! capacity), `death` (the 200-slot relay killed at 60% load, then
//! brought back), `all`. Options: `--poll 5|15` (seconds, default both),
//! `--refuse 403|503`, `--source load|status-json`, `--seed N`,
//! `--full-recheck S` (the balancer's setting; 0 = answer 503 at once).
//! The binary built before issue 9's changes has no `--full-recheck`.
#![allow(clippy::unwrap_used, reason = "a benchmark: a failure ends the run")]

use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use icecast_balancer::{Application, Settings, config_file};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use testkit::relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};

const LIMITS: [u32; 5] = [20, 50, 50, 100, 200];
const MOUNT: &str = "/live.mp3";

#[derive(Clone, Copy, PartialEq)]
enum Source {
    Load,
    StatusJson,
}

#[derive(Clone, Copy)]
struct Options {
    poll_s: u64,
    refuse: u16,
    source: Source,
    seed: u64,
    /// `--full-recheck` of the balancer (seconds; 0 = off).
    full_recheck_s: u64,
}

/// One fake relay. `held` is the truth the balancer is measured against.
struct Relay {
    name: String,
    max: u32,
    port: u16,
    held: AtomicU32,
    /// Redirected to this relay but not yet connected (counts as taken
    /// when judging whether a relay "had room").
    incoming: AtomicU32,
    /// Cumulative accepted listeners, as Icecast's `listener_connections`.
    connections: AtomicU64,
    refused: AtomicU64,
    alive: watch::Sender<bool>,
    options: Options,
}

impl Relay {
    fn room(&self) -> u32 {
        if !*self.alive.borrow() {
            return 0;
        }
        let taken = self.held.load(Ordering::SeqCst) + self.incoming.load(Ordering::SeqCst);
        self.max.saturating_sub(taken)
    }

    fn status_body(&self, path: &str) -> Option<String> {
        let held = self.held.load(Ordering::SeqCst);
        let mount = [(MOUNT, held, Some(self.max))];
        match path {
            "/load.xsl" if self.options.source == Source::Load => Some(relay::load_xsl(
                mount,
                Some(self.connections.load(Ordering::SeqCst)),
            )),
            "/status-json.xsl" => {
                let base = format!("http://127.0.0.1:{}", self.port);
                Some(relay::status_json(&base, mount).to_string())
            }
            _ => None,
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 8192 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

async fn serve_relay(relay: Arc<Relay>, listener: TcpListener) {
    let mut alive = relay.alive.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                tokio::spawn(relay_connection(relay.clone(), stream));
            }
            _ = alive.changed() => {
                if !*alive.borrow() {
                    return; // dropping the listener refuses new connections
                }
            }
        }
    }
}

async fn relay_connection(relay: Arc<Relay>, mut stream: TcpStream) {
    let Some(head) = read_head(&mut stream).await else {
        return;
    };
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    if let Some(body) = relay.status_body(&path) {
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    if path != MOUNT {
        let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\n\r\n").await;
        return;
    }
    // Icecast checks the limit and adds the listener under one lock.
    let admitted = relay
        .held
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
            (h < relay.max).then_some(h + 1)
        })
        .is_ok();
    if !admitted {
        relay.refused.fetch_add(1, Ordering::SeqCst);
        let line = if relay.options.refuse == 503 {
            "HTTP/1.0 503 Service Unavailable\r\n\r\n"
        } else {
            "HTTP/1.0 403 Forbidden\r\n\r\n"
        };
        let _ = stream.write_all(line.as_bytes()).await;
        return;
    }
    relay.connections.fetch_add(1, Ordering::SeqCst);
    let mut alive = relay.alive.subscribe();
    if stream
        .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n")
        .await
        .is_ok()
    {
        let mut sink = [0u8; 64];
        tokio::select! {
            _ = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} } => {}
            _ = async { while *alive.borrow_and_update() { if alive.changed().await.is_err() { break } } } => {}
        }
    }
    relay.held.fetch_sub(1, Ordering::SeqCst);
}

async fn start_relay(name: String, max: u32, options: Options) -> Arc<Relay> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let relay = Arc::new(Relay {
        name,
        max,
        port,
        held: AtomicU32::new(0),
        incoming: AtomicU32::new(0),
        connections: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        alive: watch::Sender::new(true),
        options,
    });
    tokio::spawn(serve_relay(relay.clone(), listener));
    relay
}

/// Kills a relay: open connections close, new ones are refused.
fn kill(relay: &Relay) {
    relay.alive.send_replace(false);
}

/// Brings a relay back on its port, empty (its listener counter too, as
/// after an Icecast restart).
async fn revive(relay: &Arc<Relay>) {
    let listener = loop {
        match TcpListener::bind(("127.0.0.1", relay.port)).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    relay.connections.store(0, Ordering::SeqCst);
    relay.alive.send_replace(true);
    tokio::spawn(serve_relay(relay.clone(), listener));
}

#[derive(Default)]
struct Tally {
    arrivals: AtomicU64,
    served: AtomicU64,
    /// Refused by a relay after the balancer sent the listener there.
    overflow: AtomicU64,
    /// 503 from the balancer.
    full: AtomicU64,
    /// 503 from the balancer while some live relay had a free slot.
    full_with_room: AtomicU64,
    /// 503 while some relay had had a free slot for 2 s or more: room a
    /// balancer that polls (and re-polls when full) could have known of.
    full_with_known_room: AtomicU64,
    /// Sent to a relay that was not accepting connections (dead).
    sent_to_dead: AtomicU64,
}

#[derive(Clone, Copy, Default)]
struct Counts {
    arrivals: u64,
    served: u64,
    overflow: u64,
    full: u64,
    full_with_room: u64,
    full_with_known_room: u64,
    sent_to_dead: u64,
}

impl Tally {
    fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::SeqCst);
        Counts {
            arrivals: get(&self.arrivals),
            served: get(&self.served),
            overflow: get(&self.overflow),
            full: get(&self.full),
            full_with_room: get(&self.full_with_room),
            full_with_known_room: get(&self.full_with_known_room),
            sent_to_dead: get(&self.sent_to_dead),
        }
    }
}

impl Counts {
    fn since(self, o: Counts) -> Counts {
        Counts {
            arrivals: self.arrivals - o.arrivals,
            served: self.served - o.served,
            overflow: self.overflow - o.overflow,
            full: self.full - o.full,
            full_with_room: self.full_with_room - o.full_with_room,
            full_with_known_room: self.full_with_known_room - o.full_with_known_room,
            sent_to_dead: self.sent_to_dead - o.sent_to_dead,
        }
    }
}

struct World {
    balancer: SocketAddr,
    relays: Vec<Arc<Relay>>,
    tally: Tally,
    /// Counting starts here (after the warm-up).
    counting: AtomicBool,
    next_ip: AtomicU32,
    /// Some relay has had room for at least `KNOWN_ROOM`.
    known_room: AtomicBool,
}

const KNOWN_ROOM: Duration = Duration::from_secs(2);

/// Keeps `World::known_room` current, looking ten times a second.
async fn watch_room(world: Arc<World>) {
    let mut since: Vec<Option<Instant>> = vec![None; world.relays.len()];
    loop {
        let now = Instant::now();
        for (i, r) in world.relays.iter().enumerate() {
            since[i] = if r.room() > 0 {
                since[i].or(Some(now))
            } else {
                None
            };
        }
        let known = since.iter().flatten().any(|t| now - *t >= KNOWN_ROOM);
        world.known_room.store(known, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl World {
    fn room(&self) -> u32 {
        self.relays.iter().map(|r| r.room()).sum()
    }
    fn count(&self, c: &AtomicU64) {
        if self.counting.load(Ordering::SeqCst) {
            c.fetch_add(1, Ordering::SeqCst);
        }
    }
}

enum Asked {
    Redirect(u16),
    Full,
    Other(u16),
}

async fn ask_balancer(world: &World, ip: u32) -> Option<Asked> {
    let mut s = TcpStream::connect(world.balancer).await.ok()?;
    let ip = std::net::Ipv4Addr::from(ip);
    let req = format!(
        "GET /icecast_balancer/live/ HTTP/1.1\r\nHost: balancer\r\nX-Forwarded-For: {ip}\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let head = read_head(&mut s).await?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(match status {
        302 => {
            let loc = head.lines().find_map(|l| {
                l.strip_prefix("location: ")
                    .or(l.strip_prefix("Location: "))
            })?;
            let port = loc.split(':').nth(2)?.split('/').next()?.parse().ok()?;
            Asked::Redirect(port)
        }
        503 => Asked::Full,
        other => Asked::Other(other),
    })
}

enum Outcome {
    /// Held until the departure time.
    Stayed,
    /// The relay died under the listener.
    Dropped,
    Refused,
}

async fn listen_on(world: &World, relay: &Relay, until: Instant) -> Outcome {
    let connected = TcpStream::connect(("127.0.0.1", relay.port)).await;
    let Ok(mut s) = connected else {
        relay.incoming.fetch_sub(1, Ordering::SeqCst);
        world.count(&world.tally.sent_to_dead);
        return Outcome::Refused;
    };
    let req = format!("GET {MOUNT} HTTP/1.0\r\nHost: relay\r\n\r\n");
    let head = match s.write_all(req.as_bytes()).await {
        Ok(()) => read_head(&mut s).await,
        Err(_) => None,
    };
    relay.incoming.fetch_sub(1, Ordering::SeqCst);
    let Some(head) = head else {
        world.count(&world.tally.sent_to_dead);
        return Outcome::Refused;
    };
    if !head.starts_with("HTTP/1.0 200") {
        world.count(&world.tally.overflow);
        return Outcome::Refused;
    }
    world.count(&world.tally.served);
    let mut sink = [0u8; 64];
    tokio::select! {
        _ = tokio::time::sleep_until(until.into()) => Outcome::Stayed,
        _ = async { while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {} } => Outcome::Dropped,
    }
}

/// One listener: asks once; a listener whose relay dies asks again at once
/// (players reconnect), and keeps asking every 2 s while refused.
async fn listener(world: Arc<World>, until: Instant, mut retry_when_refused: bool) {
    let ip = world.next_ip.fetch_add(1, Ordering::SeqCst);
    world.count(&world.tally.arrivals);
    loop {
        if Instant::now() >= until {
            return;
        }
        match ask_balancer(&world, ip).await {
            Some(Asked::Redirect(port)) => {
                let Some(relay) = world.relays.iter().find(|r| r.port == port) else {
                    return;
                };
                relay.incoming.fetch_add(1, Ordering::SeqCst);
                match listen_on(&world, relay, until).await {
                    Outcome::Stayed => return,
                    Outcome::Dropped => retry_when_refused = true,
                    Outcome::Refused if !retry_when_refused => return,
                    Outcome::Refused => tokio::time::sleep(Duration::from_secs(2)).await,
                }
            }
            Some(Asked::Full) => {
                world.count(&world.tally.full);
                if world.room() > 0 {
                    world.count(&world.tally.full_with_room);
                }
                if world.known_room.load(Ordering::SeqCst) {
                    world.count(&world.tally.full_with_known_room);
                }
                if !retry_when_refused {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Some(Asked::Other(code)) => {
                eprintln!("balancer answered {code}");
                return;
            }
            None => return,
        }
    }
}

/// Arrival times (s from start) and hold times of one scenario, so the
/// ideal can be computed on exactly what the balancer faced.
struct Schedule {
    arrivals: Vec<(f64, f64)>,
}

fn exp(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.random::<f64>()).ln()
}

/// `initial` listeners over the first 10 s (a warm system) plus Poisson
/// arrivals at `rate` per second for `secs`, holds exponential of `hold`.
fn churn_schedule(rng: &mut StdRng, initial: usize, rate: f64, hold: f64, secs: f64) -> Schedule {
    let mut arrivals: Vec<(f64, f64)> = (0..initial)
        .map(|i| (i as f64 * 10.0 / initial as f64, exp(rng, hold)))
        .collect();
    let mut t = 0.0;
    loop {
        t += exp(rng, 1.0 / rate);
        if t >= secs {
            break;
        }
        arrivals.push((t, exp(rng, hold)));
    }
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    Schedule { arrivals }
}

/// Listeners an oracle with perfect, instant knowledge would serve: every
/// arrival while fewer than `capacity` listeners are held.
fn ideal(s: &Schedule, capacity: u32, from: f64) -> u64 {
    let mut leaving: BinaryHeap<std::cmp::Reverse<u64>> = BinaryHeap::new();
    let mut served = 0;
    for &(at, hold) in &s.arrivals {
        let now = (at * 1000.0) as u64;
        while leaving.peek().is_some_and(|r| r.0 <= now) {
            leaving.pop();
        }
        if (leaving.len() as u32) < capacity {
            leaving.push(std::cmp::Reverse(((at + hold) * 1000.0) as u64));
            if at >= from {
                served += 1;
            }
        }
    }
    served
}

struct Sampler {
    samples: Mutex<Vec<Vec<u32>>>,
}

async fn sample(world: Arc<World>, sampler: Arc<Sampler>, stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !*stop.borrow() {
        tick.tick().await;
        if world.counting.load(Ordering::SeqCst) {
            let held = world
                .relays
                .iter()
                .map(|r| r.held.load(Ordering::SeqCst))
                .collect();
            sampler.samples.lock().await.push(held);
        }
    }
}

async fn start_world(options: Options) -> (Arc<World>, tempfile::TempDir) {
    let mut relays = Vec::new();
    for (i, max) in LIMITS.iter().enumerate() {
        relays.push(start_relay(format!("r{i}-{max}"), *max, options).await);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(dir.path().join("balance.db"));
    settings.listen = "127.0.0.1:0".into();
    settings.poll_interval = Duration::from_secs(options.poll_s);
    settings.poll.timeout = Duration::from_secs(2);
    settings.trusted_proxies = vec![icecast_balancer::config::parse_cidr("127.0.0.1").unwrap()];
    settings.admin_password = Some("balance-simulator-password".into());
    settings.full_recheck = Duration::from_secs(options.full_recheck_s);
    let app = Application::build(settings).await.unwrap();
    let balancer = app.local_addr().unwrap();
    let state = app.state();
    let mut toml = String::new();
    for r in &relays {
        toml.push_str(&format!(
            "[[servers]]\nname = \"{}\"\nurl = \"http://127.0.0.1:{}\"\n\n",
            r.name, r.port
        ));
    }
    toml.push_str("[[streams]]\nname = \"live\"\n\n");
    for r in &relays {
        toml.push_str(&format!(
            "[[streams.mounts]]\nserver = \"{}\"\nmount = \"{MOUNT}\"\n\n",
            r.name
        ));
    }
    let file = config_file::parse(&toml).unwrap();
    config_file::apply(state.writer(), &file).await.unwrap();
    state.refresh().await.unwrap();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    // The scheduler's first round runs at start; wait for relays to be up.
    let world = Arc::new(World {
        balancer,
        relays,
        tally: Tally::default(),
        counting: AtomicBool::new(false),
        next_ip: AtomicU32::new(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 1))),
        known_room: AtomicBool::new(false),
    });
    tokio::spawn(watch_room(world.clone()));
    state.poll_now().await.unwrap();
    state.poll_now().await.unwrap();
    (world, dir)
}

struct Report {
    scenario: String,
    counts: Counts,
    ideal: Option<u64>,
    samples: Vec<Vec<u32>>,
    note: String,
}

fn print_report(options: &Options, r: &Report) {
    let t = &r.counts;
    let capacity: u32 = LIMITS.iter().sum();
    let n = r.samples.len().max(1) as f64;
    let occupancy = r
        .samples
        .iter()
        .map(|s| f64::from(s.iter().sum::<u32>()) / f64::from(capacity))
        .sum::<f64>()
        / n;
    let fills: Vec<String> = (0..LIMITS.len())
        .map(|i| {
            let mean = r.samples.iter().map(|s| f64::from(s[i])).sum::<f64>() / n;
            format!("{:.0}%", 100.0 * mean / f64::from(LIMITS[i]))
        })
        .collect();
    // The gap between relay fill fractions, sampled once a second.
    let spreads: Vec<f64> = r
        .samples
        .iter()
        .map(|s| {
            let f: Vec<f64> = s
                .iter()
                .zip(LIMITS)
                .map(|(&h, m)| f64::from(h) / f64::from(m))
                .collect();
            let max = f.iter().cloned().fold(0.0, f64::max);
            let min = f.iter().cloned().fold(1.0, f64::min);
            max - min
        })
        .collect();
    let spread = spreads.iter().cloned().fold(0.0, f64::max);
    let mean_spread = spreads.iter().sum::<f64>() / spreads.len().max(1) as f64;
    let served = t.served;
    let ideal = r
        .ideal
        .map(|i| {
            format!(
                "{served} of {i} ({:.1}%)",
                100.0 * served as f64 / i.max(1) as f64
            )
        })
        .unwrap_or_else(|| served.to_string());
    println!(
        "{:<8} poll {:>2}s full-recheck {} refuse {} | arrivals {:>5} | overflow {:>4} | 503 {:>5} (with room {:>4}, room known 2 s {:>4}) \
         | sent to dead {:>3} | served {} | occupancy {:.0}% | fill {} | spread max {:.0} mean {:.0} pts{}",
        r.scenario,
        options.poll_s,
        options.full_recheck_s,
        options.refuse,
        t.arrivals,
        t.overflow,
        t.full,
        t.full_with_room,
        t.full_with_known_room,
        t.sent_to_dead,
        ideal,
        100.0 * occupancy,
        fills.join("/"),
        100.0 * spread,
        100.0 * mean_spread,
        r.note
    );
}

/// Starts the listeners of `schedule` at their times (relative to `start`).
fn launch(world: &Arc<World>, schedule: &Schedule, start: Instant, retry: bool) {
    for &(at, hold) in &schedule.arrivals {
        let world = world.clone();
        let begin = start + Duration::from_secs_f64(at);
        let until = begin + Duration::from_secs_f64(hold);
        tokio::spawn(async move {
            tokio::time::sleep_until(begin.into()).await;
            listener(world, until, retry).await;
        });
    }
}

async fn run_sampled(
    world: &Arc<World>,
    scenario: &str,
    body: impl std::future::Future<Output = (Option<u64>, String)>,
) -> Report {
    let sampler = Arc::new(Sampler {
        samples: Mutex::new(Vec::new()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(sample(world.clone(), sampler.clone(), stop_rx));
    let before = world.tally.counts();
    let (ideal, note) = body.await;
    stop_tx.send_replace(true);
    let samples = std::mem::take(&mut *sampler.samples.lock().await);
    Report {
        scenario: scenario.into(),
        counts: world.tally.counts().since(before),
        ideal,
        samples,
        note,
    }
}

async fn flash(options: Options) {
    let (world, _dir) = start_world(options).await;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let capacity: u32 = LIMITS.iter().sum();
    let n = 3 * capacity as usize;
    let schedule = Schedule {
        arrivals: (0..n)
            .map(|i| (i as f64 * 10.0 / n as f64, exp(&mut rng, 120.0)))
            .collect(),
    };
    world.counting.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let report = run_sampled(&world, "flash", async {
        launch(&world, &schedule, start, false);
        tokio::time::sleep(Duration::from_secs(30)).await;
        (Some(ideal(&schedule, capacity, 0.0)), String::new())
    })
    .await;
    print_report(&options, &report);
}

async fn churn(options: Options) {
    let (world, _dir) = start_world(options).await;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let capacity: u32 = LIMITS.iter().sum();
    let hold = 60.0;
    let load = 0.9 * f64::from(capacity);
    let secs = 150.0;
    let warmup = 30.0;
    let schedule = churn_schedule(&mut rng, load as usize, load / hold, hold, secs);
    let start = Instant::now();
    launch(&world, &schedule, start, false);
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    world.counting.store(true, Ordering::SeqCst);
    let report = run_sampled(&world, "churn90", async {
        tokio::time::sleep(Duration::from_secs_f64(secs - warmup)).await;
        (Some(ideal(&schedule, capacity, warmup)), String::new())
    })
    .await;
    print_report(&options, &report);
}

/// At 60% load the 200-slot relay dies for 40 s, then comes back.
async fn death(options: Options) {
    let (world, _dir) = start_world(options).await;
    let mut rng = StdRng::seed_from_u64(options.seed);
    let capacity: u32 = LIMITS.iter().sum();
    let hold = 120.0;
    let load = 0.6 * f64::from(capacity);
    let schedule = churn_schedule(&mut rng, load as usize, load / hold, hold, 130.0);
    let start = Instant::now();
    launch(&world, &schedule, start, true);
    tokio::time::sleep(Duration::from_secs(40)).await;
    let big = world.relays.last().unwrap().clone();
    world.counting.store(true, Ordering::SeqCst);
    let report = run_sampled(&world, "death", async {
        let before = big.held.load(Ordering::SeqCst);
        kill(&big);
        tokio::time::sleep(Duration::from_secs(40)).await;
        (None, format!(" | the killed relay held {before}"))
    })
    .await;
    print_report(&options, &report);

    let report = run_sampled(&world, "return", async {
        let t0 = Instant::now();
        revive(&big).await;
        let mut first = None;
        while t0.elapsed() < Duration::from_secs(40) {
            if first.is_none() && big.held.load(Ordering::SeqCst) > 0 {
                first = Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let note = match first {
            Some(d) => format!(
                " | first listener on the returned relay after {:.1} s",
                d.as_secs_f64()
            ),
            None => " | the returned relay got no listener in 40 s".into(),
        };
        (None, note)
    })
    .await;
    print_report(&options, &report);
}

fn parse_args() -> (Vec<String>, Vec<u64>, Options) {
    let mut scenarios = Vec::new();
    let mut polls = Vec::new();
    let mut options = Options {
        poll_s: 15,
        refuse: 403,
        source: Source::Load,
        seed: 9,
        full_recheck_s: 1,
    };
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--poll" => polls.extend(args.next().and_then(|v| v.parse::<u64>().ok())),
            "--refuse" => options.refuse = args.next().and_then(|v| v.parse().ok()).unwrap_or(403),
            "--source" => {
                options.source = match args.next().as_deref() {
                    Some("status-json") => Source::StatusJson,
                    _ => Source::Load,
                }
            }
            "--full-recheck" => {
                options.full_recheck_s = args.next().and_then(|v| v.parse().ok()).unwrap_or(1)
            }
            "--seed" => options.seed = args.next().and_then(|v| v.parse().ok()).unwrap_or(9),
            s => scenarios.push(s.to_string()),
        }
    }
    if scenarios.is_empty() || scenarios.iter().any(|s| s == "all") {
        scenarios = vec!["flash".into(), "churn".into(), "death".into()];
    }
    if polls.is_empty() {
        polls = vec![5, 15];
    }
    (scenarios, polls, options)
}

fn main() {
    // `cargo test --benches` builds and runs every bench: nothing to do there.
    if !std::env::args().any(|a| a == "--bench") && std::env::var("BALANCE_RUN").is_err() {
        println!("balance simulator: run with `cargo bench --bench balance -- [scenario]`");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (scenarios, polls, options) = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for &poll_s in &polls {
            for s in &scenarios {
                let o = Options { poll_s, ..options };
                match s.as_str() {
                    "flash" => flash(o).await,
                    "churn" => churn(o).await,
                    "death" => death(o).await,
                    other => eprintln!("unknown scenario {other:?} (flash, churn, death, all)"),
                }
            }
        }
    });
}
