//! Admin users: argon2id password hashes, the first-start `admin` user, and
//! the `icecast-balancer user …` commands.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;

use crate::cli::UserCommand;
use crate::domain::Slug;
use crate::store::{self, Pool, audit};

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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

fn check_password(p: &str) -> anyhow::Result<()> {
    if p.chars().count() < MIN_PASSWORD {
        anyhow::bail!("the password must have at least {MIN_PASSWORD} characters");
    }
    Ok(())
}

/// On a database without users, creates `admin` with the configured
/// password or a random one, which is printed this once.
pub async fn ensure_admin(db: &Pool, configured: Option<&str>) -> anyhow::Result<()> {
    let mut conn = db.acquire().await?;
    if store::users::count(&mut conn).await? > 0 {
        return Ok(());
    }
    let (password, generated) = match configured {
        Some(p) => {
            check_password(p).context("ICECAST_BALANCER_ADMIN_PASSWORD")?;
            (p.to_string(), false)
        }
        None => (random_secret(12), true),
    };
    store::users::insert(&mut conn, "admin", &hash_password(&password)?).await?;
    let entry = audit::Entry::new("system", "create", "user", "admin");
    audit::record(&mut conn, entry).await?;
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

fn entry<'a>(action: &'a str, name: &'a str) -> audit::Entry<'a> {
    audit::Entry::new("cli", action, "user", name)
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

pub async fn run_cli(db: &Pool, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let mut conn = db.acquire().await?;
    match cmd {
        UserCommand::Add { name } => {
            let name = Slug::parse(&name).map_err(|e| anyhow::anyhow!("user name: {e}"))?;
            if store::users::find(&mut conn, name.as_str())
                .await?
                .is_some()
            {
                anyhow::bail!("a user named {name:?} already exists (use `user passwd`)");
            }
            let password = read_password()?;
            check_password(&password)?;
            store::users::insert(&mut conn, name.as_str(), &hash_password(&password)?).await?;
            audit::record(&mut conn, entry("create", name.as_str())).await?;
            println!("user {name} added");
        }
        UserCommand::Passwd { name } => {
            if store::users::find(&mut conn, &name).await?.is_none() {
                anyhow::bail!("no user named {name:?}");
            }
            let password = read_password()?;
            check_password(&password)?;
            store::users::set_password(&mut conn, &name, &hash_password(&password)?).await?;
            audit::record(&mut conn, entry("password changed", &name)).await?;
            println!("password of {name} changed; its sessions were ended");
        }
        UserCommand::List => {
            for u in store::users::list(&mut conn).await? {
                println!("{}", u.name);
            }
        }
        UserCommand::Remove { name } => {
            store::users::delete(&mut conn, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            audit::record(&mut conn, entry("delete", &name)).await?;
            println!("user {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
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
