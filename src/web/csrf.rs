//! Cross-site request forgery defences for the admin, two layers deep:
//! 1. a state-changing request whose browser says it is cross-site
//!    (`Sec-Fetch-Site`) or whose `Origin` is not our own is refused;
//! 2. every form carries a per-session token (the login form a per-visit
//!    token tied to a cookie) that must match.
//!
//! Session cookies are also SameSite=Strict.

use axum::http::{HeaderMap, header};

/// Checks the browser's own statement of where a write comes from.
pub fn same_origin(headers: &HeaderMap, https: bool) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(format!("a {site} request may not change anything here"));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let ours = format!("{}://{host}", if https { "https" } else { "http" });
        if host.is_empty() || !origin.eq_ignore_ascii_case(&ours) {
            return Err(format!("origin {origin:?} is not this site ({ours})"));
        }
    }
    Ok(())
}

pub fn tokens_match(given: &str, expected: &str) -> bool {
    crate::domain::secret::same(given, expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn same_origin_with_port_passes() {
        let headers = h(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(same_origin(&headers, false).is_ok());
        let headers = h(&[
            ("host", "admin.example.com"),
            ("origin", "https://admin.example.com"),
        ]);
        assert!(same_origin(&headers, true).is_ok());
    }

    #[test]
    fn foreign_or_other_port_or_scheme_is_refused() {
        for (origin, https) in [
            ("http://evil.example", false),
            ("http://127.0.0.1:9999", false),
            ("https://127.0.0.1:8080", false),
            ("null", false),
        ] {
            let headers = h(&[("host", "127.0.0.1:8080"), ("origin", origin)]);
            assert!(same_origin(&headers, https).is_err(), "{origin}");
        }
    }

    #[test]
    fn fetch_metadata() {
        assert!(same_origin(&h(&[("sec-fetch-site", "cross-site")]), false).is_err());
        assert!(same_origin(&h(&[("sec-fetch-site", "same-site")]), false).is_err());
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")]), false).is_ok());
        assert!(same_origin(&h(&[("sec-fetch-site", "none")]), false).is_ok());
    }

    #[test]
    fn tokens() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc"));
        assert!(!tokens_match("", ""));
    }
}
