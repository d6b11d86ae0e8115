//! The threads that answer client connections: one single-threaded runtime
//! per core, each connection living on one of them from accept to close.
//!
//! A redirect is a few microseconds of work around two socket calls. On
//! tokio's work-stealing runtime every readable socket woke a parked
//! worker thread to come and steal the task, so a request paid for futex
//! wake-ups and a task moving between cores as much as for its answer.
//! A runtime per core, as nginx runs a process per core, keeps each
//! connection's reads, answer and writes on one thread with nothing
//! shared on the way.
//!
//! The listener stays on the main runtime: it admits a connection (the
//! caps in `serve`) and hands it to the worker with the fewest open
//! connections, which keeps the cores evenly loaded however long
//! connections last. What could hold a worker up for long is answered
//! elsewhere: admin pages, the API and metrics on the main runtime
//! (`serve::PerConnection`), snapshot builds on blocking threads.
//!
//! The pool lives for the whole process, like the poll runtime: every
//! server in a process (the tests start many) shares it.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinSet};

static POOL: OnceLock<Result<Vec<Worker>, String>> = OnceLock::new();

struct Worker {
    handle: Handle,
    /// Connections on this worker now, from every server in the process.
    open: Arc<AtomicUsize>,
}

fn pool() -> io::Result<&'static [Worker]> {
    let pool = POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..cores)
            .map(start)
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| e.to_string())
    });
    pool.as_deref()
        .map_err(|e| io::Error::other(format!("cannot start the connection threads: {e}")))
}

/// Starts worker `i`: a thread driving its runtime for ever (a runtime
/// only runs tasks while a thread is inside `block_on`).
fn start(i: usize) -> io::Result<Worker> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name(format!("serve-{i}"))
        .spawn(move || rt.block_on(std::future::pending::<()>()))?;
    Ok(Worker {
        handle,
        open: Arc::new(AtomicUsize::new(0)),
    })
}

/// Starts the pool now, so a failure to start it is an error at start-up
/// rather than at the first connection.
pub fn ensure_started() -> io::Result<()> {
    pool().map(|_| ())
}

/// Runs `conn` on the least busy worker, tracked by `set` (which can wait
/// for it or abort it from the main runtime).
pub fn spawn<F>(set: &mut JoinSet<()>, conn: F) -> io::Result<AbortHandle>
where
    F: Future<Output = ()> + Send + 'static,
{
    let pool = pool()?;
    let worker = pool
        .iter()
        .min_by_key(|w| w.open.load(Ordering::Relaxed))
        .ok_or_else(|| io::Error::other("no connection threads"))?;
    let open = Open::new(worker.open.clone());
    Ok(set.spawn_on(
        async move {
            let _open = open;
            conn.await;
        },
        &worker.handle,
    ))
}

/// One connection counted on its worker for as long as it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(count: Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::Relaxed);
        Open(count)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Open connections are spread evenly and answered on the workers'
    /// threads. Other tests' connections share the pool, so the spread is
    /// checked on what this test added.
    #[tokio::test]
    async fn connections_go_to_the_least_busy_worker_thread() {
        let pool = pool().unwrap();
        let (release, held) = tokio::sync::watch::channel(false);
        let (names_tx, mut names) = tokio::sync::mpsc::unbounded_channel();
        let mut set = JoinSet::new();
        let before: Vec<usize> = pool.iter().map(|w| w.open.load(Ordering::SeqCst)).collect();
        for _ in 0..pool.len() * 3 {
            let (mut held, names_tx) = (held.clone(), names_tx.clone());
            spawn(&mut set, async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = names_tx.send(name);
                let _ = held.wait_for(|r| *r).await;
            })
            .unwrap();
        }
        for _ in 0..pool.len() * 3 {
            let name = names.recv().await.unwrap().unwrap_or_default();
            assert!(name.starts_with("serve-"), "ran on {name:?}");
        }
        let added: Vec<usize> = (pool.iter().zip(&before))
            .map(|(w, b)| w.open.load(Ordering::SeqCst).saturating_sub(*b))
            .collect();
        assert_eq!(added.iter().sum::<usize>(), pool.len() * 3, "{added:?}");
        let now: Vec<usize> = pool.iter().map(|w| w.open.load(Ordering::SeqCst)).collect();
        let spread = |v: &[usize]| v.iter().max().unwrap() - v.iter().min().unwrap();
        assert!(
            spread(&now) <= spread(&before).max(1),
            "{before:?} then {now:?}"
        );
        release.send(true).unwrap();
        while set.join_next().await.is_some() {}
        let after: Vec<usize> = pool.iter().map(|w| w.open.load(Ordering::SeqCst)).collect();
        assert!(
            after.iter().zip(&before).all(|(a, b)| a <= b),
            "{after:?} vs {before:?}"
        );
    }
}
