//! What the per-client book holds in memory while distinct clients keep
//! coming: a million of them (10,000 new ones a second for 100 s, the
//! default 5 s grace, a sweep every 2 s as the server's sweeper does),
//! the bytes the book holds measured with a counting allocator, and the
//! cost of a record. `cargo bench --bench client_book`; `BENCH_CLIENTS`
//! changes the number of clients.
#![allow(
    unsafe_code,
    reason = "a global allocator is an unsafe trait: counting bytes needs one"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use icecast_balancer::routing::clients::{ClientBook, agent_hash};

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counter is only an atomic add beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PER_SECOND: u64 = 10_000;
const GRACE_MS: i64 = 5_000;
const SWEEP_MS: i64 = 2_000;

fn main() {
    let clients: u64 = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let base = LIVE.load(Ordering::Relaxed);
    let book = ClientBook::default();
    let agent = agent_hash(b"VLC/3.0.20");
    let per_sweep = PER_SECOND * SWEEP_MS as u64 / 1000;
    let tenth = (clients / 10).max(1);
    let (mut peak_len, mut peak_bytes) = (0, 0);
    let started = Instant::now();
    println!("clients  entries  KiB held (after each tenth)");
    for n in 0..clients {
        let now_ms = (n * 1000 / PER_SECOND) as i64;
        let ip = IpAddr::V6(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n)));
        book.record(ip, 1, agent, 7, now_ms);
        if (n + 1) % per_sweep == 0 {
            peak_len = peak_len.max(book.len());
            peak_bytes = peak_bytes.max(LIVE.load(Ordering::Relaxed) - base);
            book.sweep(now_ms, GRACE_MS);
        }
        if (n + 1) % tenth == 0 {
            let held = LIVE.load(Ordering::Relaxed) - base;
            println!("{:>7}  {:>7}  {:>8}", n + 1, book.len(), held / 1024);
        }
    }
    let ns = started.elapsed().as_nanos() as f64 / clients as f64;
    println!(
        "{clients} clients: at most {peak_len} entries, at most {} KiB held; \
         {ns:.0} ns per record (with the sweeps)",
        peak_bytes / 1024
    );
}
