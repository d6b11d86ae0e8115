//! A constant-rate HTTP/1.1 load generator that corrects for coordinated
//! omission: request `i` is due at `start + i / rate`, and its latency is
//! measured from that instant, not from when a connection got round to
//! sending it. A server that stalls for 100 ms therefore shows every request
//! that should have gone out during the stall as late, as a listener would
//! see it (closed-loop tools like wrk hide those requests).
//!
//! Every request carries an `X-Forwarded-For` address from a list (a file,
//! one address per line, or 1,000 generated public addresses), so the
//! server looks up a different client on each request.
//!
//! ```sh
//! cargo run --release --example loadgen -- --url http://127.0.0.1:8080/icecast_balancer/live/ \
//!     --rate 20000 --duration 10 --connections 64 --xff-file addrs.txt
//! ```
//!
//! Prints p50/p90/p99/p99.9/max latency, the achieved rate and the answers
//! by status class. Without `--url` it prints its usage and exits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const USAGE: &str = "loadgen --url http://HOST:PORT/PATH [--rate N/s] [--duration S] \
[--connections N] [--xff-file FILE] [--xff-count N] [--threads N]";

struct Options {
    addr: SocketAddr,
    host: String,
    path: String,
    rate: f64,
    duration: Duration,
    connections: usize,
    xff: Vec<String>,
    threads: usize,
}

fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .parse::<SocketAddr>()
        .map_err(|e| format!("{host}: want IP:PORT ({e})"))?;
    Ok((addr, host.to_string(), path.to_string()))
}

/// Public-looking IPv4 addresses spread over the space, skipping the
/// private, loopback and multicast ranges (a deterministic sequence, so
/// runs are comparable).
fn generated_addresses(n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut x: u32 = 0x9E37_79B9;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let ip = Ipv4Addr::from(x);
        if ip.is_private() || ip.is_loopback() || ip.is_multicast() || ip.octets()[0] >= 224 {
            continue;
        }
        out.push(ip.to_string());
    }
    out
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut args = std::env::args().skip(1);
    let (mut url, mut rate, mut duration, mut connections, mut threads) =
        (None, 1000.0, 10.0, 64usize, 2usize);
    let (mut xff_file, mut xff_count) = (None, 1000usize);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--url" => url = Some(value()?),
            "--rate" => rate = value()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => duration = value()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--connections" => {
                connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--xff-file" => xff_file = Some(value()?),
            "--xff-count" => {
                xff_count = value()?.parse().map_err(|e| format!("--xff-count: {e}"))?
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let Some(url) = url else { return Ok(None) };
    let (addr, host, path) = parse_url(&url)?;
    let xff = match xff_file {
        Some(f) => std::fs::read_to_string(&f)
            .map_err(|e| format!("{f}: {e}"))?
            .lines()
            .map(str::trim)
            .filter(|l| l.parse::<IpAddr>().is_ok())
            .map(String::from)
            .collect(),
        None => generated_addresses(xff_count),
    };
    if xff.is_empty() || rate <= 0.0 || connections == 0 || duration <= 0.0 {
        return Err("need addresses, a positive rate, duration and connections".into());
    }
    Ok(Some(Options {
        addr,
        host,
        path,
        rate,
        duration: Duration::from_secs_f64(duration),
        connections,
        xff,
        threads: threads.max(1),
    }))
}

/// What one connection task saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    by_class: [u64; 6],
    errors: u64,
    last_done: Option<Instant>,
}

/// Reads one response; `Ok(false)` when the server closes after it.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    buf.clear();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let length: usize = header("content-length:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let close = header("connection:").is_some_and(|v| v == "close");
    let mut have = buf.len() - head_end;
    while have < length {
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
    }
    Ok((status, !close))
}

async fn connection(
    opts: Arc<Options>,
    next: Arc<AtomicU64>,
    total: u64,
    start: Instant,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    let interval = 1.0 / opts.rate;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let due = start + Duration::from_secs_f64(i as f64 * interval);
        tokio::time::sleep_until(due).await;
        if Instant::now() > deadline {
            tally.errors += 1;
            continue;
        }
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nX-Forwarded-For: {}\r\nUser-Agent: loadgen\r\n\r\n",
            opts.path,
            opts.host,
            opts.xff[i as usize % opts.xff.len()]
        );
        let outcome = async {
            if conn.is_none() {
                let c = TcpStream::connect(opts.addr).await?;
                c.set_nodelay(true)?;
                conn = Some(c);
            }
            let c = conn.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
            c.write_all(request.as_bytes()).await?;
            read_response(c, &mut buf).await
        };
        match tokio::time::timeout_at(deadline, outcome).await {
            Ok(Ok((status, keep))) => {
                let now = Instant::now();
                tally.latencies_us.push((now - due).as_micros() as u64);
                tally.by_class[usize::from(status / 100).min(5)] += 1;
                tally.last_done = Some(now);
                if !keep {
                    conn = None;
                }
            }
            _ => {
                tally.errors += 1;
                conn = None;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn report(opts: &Options, start: Instant, tallies: Vec<Tally>) {
    let mut lat = Vec::new();
    let (mut by_class, mut errors, mut last) = ([0u64; 6], 0, start);
    for t in tallies {
        lat.extend(t.latencies_us);
        for (a, b) in by_class.iter_mut().zip(t.by_class) {
            *a += b;
        }
        errors += t.errors;
        last = last.max(t.last_done.unwrap_or(start));
    }
    lat.sort_unstable();
    let secs = (last - start).as_secs_f64().max(1e-9);
    println!(
        "target {:.0} req/s for {:.0} s over {} connections, {} forwarded addresses",
        opts.rate,
        opts.duration.as_secs_f64(),
        opts.connections,
        opts.xff.len()
    );
    println!(
        "achieved {:.0} req/s ({} answers, {} errors/timeouts; 2xx {} 3xx {} 4xx {} 5xx {} other {})",
        lat.len() as f64 / secs,
        lat.len(),
        errors,
        by_class[2],
        by_class[3],
        by_class[4],
        by_class[5],
        by_class[0] + by_class[1]
    );
    println!(
        "latency ms (from intended send time): p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        percentile(&lat, 99.9),
        percentile(&lat, 100.0)
    );
}

fn main() {
    let opts = match parse_args() {
        Ok(Some(o)) => Arc::new(o),
        Ok(None) => {
            println!("usage: {USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        let total = (opts.rate * opts.duration.as_secs_f64()).ceil() as u64;
        // A little ahead, so every connection is waiting before the first
        // request is due.
        let start = Instant::now() + Duration::from_millis(50);
        // Late requests still count until well after the schedule ends.
        let deadline = start + opts.duration + Duration::from_secs(10);
        let next = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..opts.connections)
            .map(|_| {
                tokio::spawn(connection(
                    opts.clone(),
                    next.clone(),
                    total,
                    start,
                    deadline,
                ))
            })
            .collect();
        let mut tallies = Vec::new();
        for t in tasks {
            if let Ok(tally) = t.await {
                tallies.push(tally);
            }
        }
        report(&opts, start, tallies);
    });
}
