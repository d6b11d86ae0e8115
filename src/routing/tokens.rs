//! Signed redirect tokens: each 302 carries one in its query string, the
//! relay echoes it in its `listener_add` callback, and the balancer knows
//! that this listener is the one it reserved a slot for.
//!
//! A token names the mount, the second it was issued and a serial number,
//! and is signed (HMAC-SHA-256, cut to 96 bits) with a key this instance
//! made at start: only this instance can have issued a valid one, a
//! forged or edited one fails the check, one older than the reservation
//! TTL is expired, and each is redeemed once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

/// The query parameter the token travels in.
pub const PARAM: &str = "ibt";

const PAYLOAD: usize = 16;
const MAC: usize = 12;

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The mount's database id.
    pub mount: i64,
    pub issued_s: u64,
    serial: u32,
}

pub struct Signer {
    key: hmac::Key,
    next: AtomicU32,
    /// Serials redeemed, with the second they expire.
    redeemed: Mutex<Redeemed>,
}

#[derive(Default)]
struct Redeemed {
    by_serial: HashMap<u32, u64>,
    pruned_s: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(key hidden)")
    }
}

impl Signer {
    /// A signer with a fresh random key.
    pub fn random() -> Signer {
        let key: [u8; 32] = rand::random();
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key),
            next: AtomicU32::new(rand::random()),
            redeemed: Mutex::new(Redeemed::default()),
        }
    }

    /// A token for a reservation on mount `mount` made at `now_s`.
    pub fn sign(&self, mount: i64, now_s: u64) -> String {
        let serial = self.next.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; PAYLOAD + MAC];
        raw[..8].copy_from_slice(&mount.to_be_bytes());
        raw[8..12].copy_from_slice(&(now_s as u32).to_be_bytes());
        raw[12..16].copy_from_slice(&serial.to_be_bytes());
        let tag = hmac::sign(&self.key, &raw[..PAYLOAD]);
        raw[PAYLOAD..].copy_from_slice(&tag.as_ref()[..MAC]);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The claim of a token this signer issued within `ttl_s` of `now_s`;
    /// `None` for anything else (forged, edited, expired, garbled).
    pub fn verify(&self, token: &str, now_s: u64, ttl_s: u64) -> Option<Claim> {
        let mut raw = [0u8; PAYLOAD + MAC];
        let n = URL_SAFE_NO_PAD.decode_slice(token, &mut raw).ok()?;
        if n != raw.len() {
            return None;
        }
        let tag = hmac::sign(&self.key, &raw[..PAYLOAD]);
        let good: bool =
            subtle::ConstantTimeEq::ct_eq(&tag.as_ref()[..MAC], &raw[PAYLOAD..]).into();
        if !good {
            return None;
        }
        let word =
            |r: std::ops::Range<usize>| raw[r].iter().fold(0u64, |a, &b| a << 8 | u64::from(b));
        let issued_32 = word(8..12);
        // Seconds travel as 32 bits; the issue second is the latest one at
        // or before now with those bits.
        let issued_s = (now_s & !0xFFFF_FFFF) | issued_32;
        let issued_s = if issued_s > now_s {
            issued_s.checked_sub(1 << 32)?
        } else {
            issued_s
        };
        if now_s >= issued_s + ttl_s.max(1) {
            return None;
        }
        Some(Claim {
            mount: word(0..8) as i64,
            issued_s,
            serial: word(12..16) as u32,
        })
    }

    /// Marks the claim used; `false` if it was already (a replay).
    pub fn redeem(&self, claim: Claim, now_s: u64, ttl_s: u64) -> bool {
        let mut r = self.redeemed.lock().unwrap_or_else(PoisonError::into_inner);
        if r.pruned_s < now_s && r.by_serial.len() > 1024 {
            r.by_serial.retain(|_, expires| *expires > now_s);
            r.pruned_s = now_s;
        }
        let expires = claim.issued_s + ttl_s.max(1);
        match r.by_serial.insert(claim.serial, expires) {
            Some(prev) if prev > now_s => {
                r.by_serial.insert(claim.serial, prev);
                false
            }
            _ => true,
        }
    }
}

/// The token in a request URI's query (`/live.mp3?a=1&ibt=…`), if any.
pub fn from_uri(uri: &str) -> Option<&str> {
    let (_, query) = uri.split_once('?')?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(PARAM)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_once_and_until_it_expires() {
        let s = Signer::random();
        let t = s.sign(42, 1_000);
        assert_eq!(t.len(), 38);
        let c = s.verify(&t, 1_010, 60).expect("valid");
        assert_eq!((c.mount, c.issued_s), (42, 1_000));
        assert!(s.redeem(c, 1_010, 60));
        assert!(!s.redeem(c, 1_011, 60), "replayed");
        assert_eq!(s.verify(&t, 1_060, 60), None, "expired");
    }

    #[test]
    fn forged_edited_or_foreign_tokens_fail() {
        let s = Signer::random();
        let t = s.sign(42, 1_000);
        let mut edited = t.clone().into_bytes();
        edited[3] = if edited[3] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        assert_eq!(s.verify(&edited, 1_001, 60), None);
        assert_eq!(Signer::random().verify(&t, 1_001, 60), None, "another key");
        assert_eq!(s.verify("", 1_001, 60), None);
        assert_eq!(s.verify("not-a-token!", 1_001, 60), None);
        assert_eq!(s.verify(&format!("{t}AA"), 1_001, 60), None);
    }

    #[test]
    fn the_token_is_found_among_other_parameters() {
        assert_eq!(from_uri("/live.mp3?a=1&ibt=XYZ&b=2"), Some("XYZ"));
        assert_eq!(from_uri("/live.mp3?ibt=XYZ"), Some("XYZ"));
        assert_eq!(from_uri("/live.mp3?xibt=XYZ"), None);
        assert_eq!(from_uri("/live.mp3"), None);
    }
}
