//! Admin users: argon2id password hashes and the first-start `admin` user.

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

use crate::store;
use crate::store::changes::{self, Actor, Writer};

pub const MIN_PASSWORD: usize = 8;

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
pub fn verify_nothing(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("timing equaliser").unwrap_or_default());
    let _ = verify_password(hash, password);
}

/// `bytes` random bytes as lowercase hex: tokens and generated passwords.
pub fn random_secret(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

/// A new API token's secret: 192 random bits, prefixed so a leaked one is
/// recognisable in a log or a repository.
pub fn api_token_secret() -> String {
    format!("icb_{}", random_secret(24))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn check_password(p: &str) -> anyhow::Result<()> {
    if p.chars().count() < MIN_PASSWORD {
        anyhow::bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    Ok(())
}

/// On a database without users, creates `admin` with the configured
/// password or a random one, which is printed this once.
pub async fn ensure_admin(writer: &Writer, configured: Option<&str>) -> anyhow::Result<()> {
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
