//! Admin users: argon2id password hashes (checked on a small pool of
//! hashing threads) and the first-start `admin` user.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

use crate::store;
use crate::store::changes::{self, Actor, Writer};

pub(crate) const MIN_PASSWORD: usize = 8;

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))?
        .to_string())
}

pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Spends the time of one verification, so a login for a user that does
/// not exist takes as long as one with a wrong password.
pub(crate) fn verify_nothing(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("timing equaliser").unwrap_or_default());
    let _ = verify_password(hash, password);
}

/// Password checks waiting for a hashing thread at most; a check beyond
/// them is refused rather than queued (its login is answered 503).
const QUEUE: usize = 8;

/// All hashing threads are busy and the queue is full.
#[derive(Debug)]
pub(crate) struct Busy;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads: one or two, whatever the load, so a login flood
/// costs at most two 19 MiB matrices and two cores' worth of argon2, and
/// the memory is given back when the queue runs dry.
struct Pool {
    jobs: std::sync::mpsc::SyncSender<Job>,
    /// Checks queued or running.
    pending: Arc<AtomicUsize>,
}

fn pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let pending = Arc::new(AtomicUsize::new(0));
        for i in 0..(cores / 2).clamp(1, 2) {
            let (rx, pending) = (rx.clone(), pending.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("hashing-{i}"))
                .spawn(move || hashing_thread(&rx, &pending));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
                return None;
            }
        }
        Some(Pool { jobs: tx, pending })
    })
    .as_ref()
}

fn hashing_thread(jobs: &Mutex<std::sync::mpsc::Receiver<Job>>, pending: &AtomicUsize) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        job();
        if pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The burst is over: give its matrices back.
            crate::memory::trim();
        }
    }
}

/// Checks `password` against `hash` on the hashing threads; without a
/// hash, a check of the same cost (see [`verify_nothing`]).
pub(crate) async fn verify_pooled(hash: Option<String>, password: String) -> Result<bool, Busy> {
    let pool = pool().ok_or(Busy)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let ok = match hash {
            Some(h) => verify_password(&h, &password),
            None => {
                verify_nothing(&password);
                false
            }
        };
        let _ = tx.send(ok);
    });
    pool.pending.fetch_add(1, Ordering::AcqRel);
    if pool.jobs.try_send(job).is_err() {
        pool.pending.fetch_sub(1, Ordering::AcqRel);
        return Err(Busy);
    }
    rx.await.map_err(|_| Busy)
}

/// `bytes` random bytes as lowercase hex: tokens and generated passwords.
pub(crate) fn random_secret(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

/// A new API token's secret: 192 random bits, prefixed so a leaked one is
/// recognisable in a log or a repository.
pub fn api_token_secret() -> String {
    format!("icb_{}", random_secret(24))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn check_password(p: &str) -> anyhow::Result<()> {
    if p.chars().count() < MIN_PASSWORD {
        anyhow::bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    Ok(())
}

/// On a database without users, creates `admin` with the configured
/// password or a random one, which is printed this once.
pub(crate) async fn ensure_admin(writer: &Writer, configured: Option<&str>) -> anyhow::Result<()> {
    // Counted inside the write transaction: two processes starting on one
    // fresh database create one admin, not two.
    let mut ctx = writer.begin(Actor::new("system")).await?;
    if store::users::count(ctx.conn()).await? > 0 {
        return Ok(());
    }
    let (password, generated) = match configured {
        Some(p) => {
            check_password(p).context("ICECAST_BALANCER_ADMIN_PASSWORD")?;
            (p.to_string(), false)
        }
        None => (random_secret(12), true),
    };
    changes::create_user(&mut ctx, "admin", &hash_password(&password)?).await?;
    writer.commit(ctx).await?;
    if generated {
        // The one time a password is ever logged: there is no other way to
        // hand it to the operator of a fresh install.
        tracing::warn!(
            "created admin user \"admin\" with password {password} — log in at /admin/ and keep it safe; it is not shown again"
        );
    } else {
        tracing::info!(
            "created admin user \"admin\" with the password from ICECAST_BALANCER_ADMIN_PASSWORD"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_argon2id() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "wrong horse"));
        assert!(!verify_password("garbage", "x"));
        assert_ne!(hash_password("correct horse").unwrap(), h, "salted");
    }
}
