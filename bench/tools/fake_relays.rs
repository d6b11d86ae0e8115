//! Many fake Icecast relays in one process, each on its own loopback port
//! (a distinct server URL, so the poller holds a connection per relay as it
//! would in production), answering `load.xsl` with listener counts that
//! change on every request. A fraction can be black-holed: they accept the
//! connection and never answer, like a relay whose process hangs.
//!
//! ```sh
//! cargo run --release --example fake_relays -- --count 1000 --config relays.toml [--blackhole 0.1] [--mounts 1]
//! ```
//!
//! Writes an importable config (servers on five continents, streams of
//! 20 relays' `/live.mp3`, the first named `live`), prints `ready` and serves until
//! killed. Without `--config` it prints its usage and exits.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str =
    "fake_relays --count N --config OUT.toml [--blackhole FRACTION] [--mounts PER_RELAY] [--max N]";

/// Where relays stand: four cities on each of five continents.
const PLACES: &[(&str, f64, f64)] = &[
    ("DE", 50.11, 8.68),
    ("NL", 52.37, 4.90),
    ("GB", 51.51, -0.13),
    ("FR", 48.86, 2.35),
    ("US", 40.71, -74.01),
    ("US", 37.77, -122.42),
    ("CA", 43.65, -79.38),
    ("US", 41.88, -87.63),
    ("JP", 35.68, 139.69),
    ("SG", 1.35, 103.82),
    ("IN", 19.08, 72.88),
    ("KR", 37.57, 126.98),
    ("AU", -33.87, 151.21),
    ("AU", -37.81, 144.96),
    ("NZ", -36.85, 174.76),
    ("AU", -31.95, 115.86),
    ("BR", -23.55, -46.63),
    ("AR", -34.60, -58.38),
    ("CL", -33.45, -70.67),
    ("CO", 4.71, -74.07),
];

struct Options {
    count: usize,
    config: String,
    blackhole: f64,
    mounts: usize,
    /// Per-mount limit; `None` answers "unlimited", so a long benchmark
    /// never fills the relays up and turns into 503s.
    max: Option<u32>,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut args = std::env::args().skip(1);
    let (mut count, mut config, mut blackhole, mut mounts, mut max) = (20, None, 0.0, 1, None);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--count" => count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--config" => config = Some(value()?),
            "--blackhole" => {
                blackhole = value()?.parse().map_err(|e| format!("--blackhole: {e}"))?
            }
            "--mounts" => mounts = value()?.parse().map_err(|e| format!("--mounts: {e}"))?,
            "--max" => max = Some(value()?.parse().map_err(|e| format!("--max: {e}"))?),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(config.map(|config| Options {
        count,
        config,
        blackhole,
        mounts: mounts.max(1),
        max,
    }))
}

/// The load.xsl answer of relay `relay` for its `seq`-th request.
fn load_xsl(relay: usize, seq: u64, mounts: usize, max: Option<u32>) -> String {
    let names: Vec<String> = (0..mounts)
        .map(|m| match m {
            0 => "/live.mp3".to_string(),
            m => format!("/extra-{m}.mp3"),
        })
        .collect();
    let loads = names.iter().enumerate().map(|(m, name)| {
        let listeners = (seq * 7 + relay as u64 * 13 + m as u64) % 400;
        (name.as_str(), listeners as u32, max)
    });
    testkit::relay::load_xsl(loads, None)
}

async fn serve(mut conn: TcpStream, relay: usize, opts: Arc<Options>, seq: Arc<AtomicU64>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 2048];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let found = String::from_utf8_lossy(&buf[..head_end]).contains("load.xsl");
        buf.drain(..head_end);
        let (status, body) = if found {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            ("200 OK", load_xsl(relay, n, opts.mounts, opts.max))
        } else {
            ("404 Not Found", String::new())
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn relay(listener: TcpListener, index: usize, opts: Arc<Options>, black_hole: bool) {
    let seq = Arc::new(AtomicU64::new(0));
    let mut held = Vec::new();
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            continue;
        };
        if black_hole {
            // Never answered, never closed: the poller's timeout ends it.
            held.push(conn);
            continue;
        }
        let _ = conn.set_nodelay(true);
        tokio::spawn(serve(conn, index, opts.clone(), seq.clone()));
    }
}

fn config(ports: &[u16], blackholed: &[bool]) -> String {
    let mut out = String::new();
    for (i, port) in ports.iter().enumerate() {
        let (country, lat, lon) = PLACES[i % PLACES.len()];
        let _ = writeln!(
            out,
            "[[servers]]\nname = \"relay-{i:05}\"\nurl = \"http://127.0.0.1:{port}\"\n\
             country = \"{country}\"\nlatitude = {lat}\nlongitude = {lon}\n"
        );
    }
    // Streams of 20 relays each (`live` first, then `s1`, `s2`, ...): a
    // network of many stations, so redirects to `live` cost the same at
    // every relay count and what changes is the poll's share.
    for (i, _) in ports.iter().enumerate() {
        if i % PLACES.len() == 0 {
            let name = match i / PLACES.len() {
                0 => "live".to_string(),
                n => format!("s{n}"),
            };
            let _ = writeln!(out, "[[streams]]\nname = \"{name}\"\n");
        }
        let _ = writeln!(
            out,
            "[[streams.mounts]]\nserver = \"relay-{i:05}\"\nmount = \"/live.mp3\"\n"
        );
    }
    let dark = blackholed.iter().filter(|b| **b).count();
    let _ = writeln!(out, "# {} relays, {dark} black-holed", ports.len());
    out
}

async fn run(opts: Arc<Options>) -> std::io::Result<()> {
    let mut ports = Vec::with_capacity(opts.count);
    let mut dark = Vec::with_capacity(opts.count);
    // Every n-th relay is black-holed, spread evenly over the list.
    let every = if opts.blackhole > 0.0 {
        (1.0 / opts.blackhole).round() as usize
    } else {
        0
    };
    for i in 0..opts.count {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        ports.push(listener.local_addr()?.port());
        let black_hole = every > 0 && i % every == every - 1;
        dark.push(black_hole);
        tokio::spawn(relay(listener, i, opts.clone(), black_hole));
    }
    std::fs::write(&opts.config, config(&ports, &dark))?;
    println!("ready");
    std::future::pending::<()>().await;
    Ok(())
}

fn main() {
    let opts = match parse_args() {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("usage: {USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("fake_relays: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build();
    let result = runtime.and_then(|r| r.block_on(run(Arc::new(opts))));
    if let Err(e) = result {
        eprintln!("fake_relays: {e}");
        std::process::exit(1);
    }
}
