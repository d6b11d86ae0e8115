//! What one instance publishes in Redis, authenticated: with
//! `--cluster-secret-file`, every configuration record and member entry
//! carries an HMAC-SHA256 over what it says, keyed with the cluster's
//! secret. Write access to Redis alone then cannot log anyone in, point a
//! server at another address or make the instances poll one: a record
//! without a valid tag is refused. Without a secret, tags are empty and
//! Redis is trusted (the README says so).

use std::path::Path;

use ring::hmac;

/// The cluster's shared secret, read from a file; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

impl Secret {
    /// The file's content without surrounding white space.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let raw = std::fs::read(path)
            .map_err(|e| format!("--cluster-secret-file {}: {e}", path.display()))?;
        let secret = raw.trim_ascii().to_vec();
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "--cluster-secret-file {}: the secret must be at least {MIN_SECRET_LEN} bytes (e.g. `openssl rand -hex 32`)",
                path.display()
            ));
        }
        Ok(Secret(secret))
    }

    pub fn new(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }

    /// The tag of `parts`, each length-prefixed so no two lists of parts
    /// read alike.
    pub fn tag(&self, parts: &[&str]) -> String {
        let tag = hmac::sign(&self.key(), &framed(parts));
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `tag` is `parts`' tag (in constant time).
    pub fn verify(&self, parts: &[&str], tag: &str) -> bool {
        let Some(bytes) = unhex(tag) else {
            return false;
        };
        hmac::verify(&self.key(), &framed(parts), &bytes).is_ok()
    }
}

/// The tag to publish: empty without a secret.
pub fn tag(secret: Option<&Secret>, parts: &[&str]) -> String {
    secret.map(|s| s.tag(parts)).unwrap_or_default()
}

/// Whether a published tag is acceptable: anything without a secret.
pub fn verify(secret: Option<&Secret>, parts: &[&str], tag: &str) -> bool {
    secret.is_none_or(|s| s.verify(parts, tag))
}

fn framed(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u64).to_be_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Text from Redis fit for a log line: escaped, at most 80 characters.
pub fn loggable(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("{cut:?}{more}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_checks_every_part_and_only_with_the_key() {
        let s = Secret::new(b"0123456789abcdef0123");
        let t = s.tag(&["p", "server:a", "{}"]);
        assert!(s.verify(&["p", "server:a", "{}"], &t));
        assert!(!s.verify(&["p", "server:b", "{}"], &t));
        assert!(!s.verify(&["p", "server:a{}", ""], &t), "framed");
        assert!(!Secret::new(b"another secret, long").verify(&["p", "server:a", "{}"], &t));
        assert!(!s.verify(&["p", "server:a", "{}"], "zz"));
        assert!(verify(None, &["x"], ""));
        assert!(!verify(Some(&s), &["x"], ""));
    }

    #[test]
    fn short_or_missing_secret_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "short\n").unwrap();
        assert!(Secret::from_file(&p).unwrap_err().contains("at least 16"));
        std::fs::write(&p, "  0123456789abcdef0123\n").unwrap();
        assert_eq!(
            Secret::from_file(&p).unwrap(),
            Secret::new(b"0123456789abcdef0123")
        );
        assert!(Secret::from_file(&dir.path().join("none")).is_err());
        assert_eq!(format!("{:?}", Secret::new(b"x")), "Secret(***)");
    }

    #[test]
    fn loggable_text_is_escaped_and_cut() {
        assert_eq!(loggable("a\u{1b}[31mb"), "\"a\\u{1b}[31mb\"");
        assert!(loggable(&"x".repeat(200)).ends_with('…'));
    }
}
