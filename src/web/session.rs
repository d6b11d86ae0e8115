//! The admin session as every part of the web layer sees it: which user a
//! request's session cookie belongs to. The admin's pages require one; the
//! API shows details to one. Logging in and out is `admin::auth`.

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::csrf;
use crate::error::{Error, Result};
use crate::store;
use crate::web::AppState;

/// The session cookie: a random token, of which the database keeps only
/// the SHA-256.
pub(crate) const SESSION_COOKIE: &str = "icb_session";
/// Sessions end after this long without a request.
pub const IDLE_TIMEOUT_MS: i64 = 12 * 3600 * 1000;

/// The logged-in user of this request.
#[derive(Debug, Clone)]
pub(crate) struct AdminUser {
    pub name: String,
    pub csrf_token: String,
}

impl AdminUser {
    /// Compares a form's `csrf_token` with the session's.
    pub(crate) fn check_csrf(&self, given: &str) -> Result<()> {
        if csrf::tokens_match(given, &self.csrf_token) {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "This form has expired or came from another site (CSRF token mismatch). \
                 Reload the page and try again."
                    .into(),
            ))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AdminUser {
    type Rejection = Error;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<AdminUser>()
            .cloned()
            .ok_or_else(|| Error::Unauthorized("login required".into()))
    }
}

/// The value of cookie `name` in the request, if it carries one.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    axum_extra::extract::cookie::CookieJar::from_headers(headers)
        .get(name)
        .map(|c| c.value().to_string())
}

/// The user whose session cookie this request carries, if it is valid.
pub(crate) async fn session_user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<AdminUser>> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let mut conn = state.db().acquire().await?;
    let found = store::sessions::find(&mut conn, &token, IDLE_TIMEOUT_MS).await?;
    Ok(found.map(|s| AdminUser {
        name: s.user_name,
        csrf_token: s.csrf_token,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::COOKIE,
            "a=1; icb_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
