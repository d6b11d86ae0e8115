//! Where poll rounds run: a runtime of their own on one worker thread with
//! a lower scheduling priority than the threads that answer listeners.
//!
//! A round at thousands of relays is over a second of CPU (requests,
//! parsing, the snapshot rebuild). On the server's own workers that time
//! is taken from redirects, whose p99 then grows several-fold while rounds
//! run back to back. On a thread niced by [`NICE`] the kernel lets
//! redirects go first and gives the round what is left; when redirects
//! leave the cores idle the round runs at full speed.
//!
//! The runtime lives for the whole process (a runtime cannot be dropped
//! from async code, and every server in a process can share it).

use std::future::Future;
use std::sync::OnceLock;

/// The poll runtime could not start, or a task on it panicked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the poll runtime: {0}")]
    Start(String),
    #[error("poll task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How much lower than the listeners' threads: CFS weight 335 against
/// 1024, about a quarter of a core for polls while redirects saturate
/// both; enough for a 5,000-relay round every 15 s, so polls never starve.
pub const NICE: i32 = 5;

static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();

#[allow(unsafe_code, reason = "setpriority has no safe wrapper in std")]
fn lower_priority() {
    // SAFETY: setpriority with PRIO_PROCESS and 0 acts on the calling
    // thread on Linux; it takes no pointers. Failure (not permitted) only
    // leaves the thread at normal priority.
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
}

fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("poll")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    });
    rt.as_ref().map_err(|e| Error::Start(e.clone()))
}

/// Runs `f` on the poll runtime and waits for it. If the caller stops
/// waiting, `f` still runs to its end (a round is not cut half-written).
pub async fn run<F>(f: F) -> Result<F::Output, Error>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Ok(runtime()?.spawn(f).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(unsafe_code, reason = "getpriority has no safe wrapper in std")]
    fn own_nice() -> i32 {
        // SAFETY: as in `lower_priority`; reads the calling thread's value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[tokio::test]
    async fn rounds_run_on_a_poll_thread_below_the_listeners() {
        let here = own_nice();
        let (nice, name) =
            run(async { (own_nice(), std::thread::current().name().map(String::from)) })
                .await
                .unwrap();
        assert_eq!(name.as_deref(), Some("poll"));
        // Raising one's own nice value needs no privilege; lowering it does.
        assert_eq!(nice, NICE.max(here), "caller at {here}");
        assert_eq!(own_nice(), here, "the caller's priority is unchanged");
    }
}
