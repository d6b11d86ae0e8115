//! Login and logout. A login always issues a fresh session id (so a
//! session id planted before login is worthless), and failed logins are
//! rate-limited per client address and per user name.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::FromRequest;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{
    AdminUser, FLASH_COOKIE, Flash, Notice, SESSION_COOKIE, client, cookie, is_https,
    redirect_with_flash, safe_next, set_cookie,
};
use crate::domain::network::address_key;
use crate::domain::text::{Escaped, clean};
use crate::error::{Error, Result};
use crate::store;
use crate::store::audit::{Action, Entry, Kind};
use crate::users::{random_secret, verify_pooled};
use crate::web::AppState;
use crate::web::csrf::tokens_match;

const LOGIN_COOKIE: &str = "icb_login";
/// Failed logins counted over this window…
pub(crate) const WINDOW_MS: i64 = 15 * 60 * 1000;
/// …may be at most this many from one address…
pub const MAX_PER_IP: i64 = 5;
/// …or for one user name (from anywhere).
pub const MAX_PER_USER: i64 = 10;
/// Longest user name looked at; longer input is cut to this.
pub(crate) const MAX_NAME_CHARS: usize = 64;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/login", get(form).post(login))
        .route("/admin/logout", post(logout))
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/login.html")]
struct LoginPage {
    next: String,
    username: String,
    error: Option<String>,
    /// A message carried over, e.g. "You have logged out."
    notice: Option<String>,
    token: String,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn login_page(status: StatusCode, page: LoginPage, secure: bool) -> Response {
    let token = page.token.clone();
    let mut r = (status, page).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, Some(&token), secure),
    );
    r
}

async fn form(State(state): State<AppState>, Query(q): Query<NextQuery>, req: Request) -> Response {
    let next = safe_next(q.next.as_deref());
    if req.extensions().get::<AdminUser>().is_some() {
        return Redirect::to(&next).into_response();
    }
    let secure = is_https(&state, &req);
    let notice = req
        .extensions()
        .get::<Flash>()
        .and_then(|f| f.0.clone())
        .map(|(Notice::Done(t) | Notice::Problem(t))| t);
    let mut r = login_page(
        StatusCode::OK,
        LoginPage {
            next,
            username: String::new(),
            error: None,
            notice: notice.clone(),
            token: random_secret(16),
        },
        secure,
    );
    // The page sets a cookie of its own, so the guard would not drop the
    // shown message: drop it here, or it would greet the next login too.
    if notice.is_some() {
        r.headers_mut()
            .append(header::SET_COOKIE, set_cookie(FLASH_COOKIE, None, secure));
    }
    r
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    username: String,
    password: String,
    next: String,
    login_token: String,
}

async fn login(State(state): State<AppState>, req: Request) -> Result<Response> {
    let from = client(&state, &req);
    let secure = from.as_ref().is_some_and(|c| c.https);
    let ip = from.as_ref().map(|c| c.ip.to_string()).unwrap_or_default();
    // The per-address limit counts an IPv6 /64 as one address.
    let limit_key = from
        .as_ref()
        .map(|c| address_key(c.ip).to_string())
        .unwrap_or_default();
    let headers: HeaderMap = req.headers().clone();
    let Form(f): Form<LoginForm> = Form::from_request(req, &state)
        .await
        .map_err(|e| Error::BadRequest(format!("bad login form: {e}")))?;
    let attempt = Attempt {
        next: safe_next(Some(&f.next)),
        // No user name is this long; a longer one is cut before it reaches
        // the database, the audit log or the page.
        username: clean(f.username.trim(), MAX_NAME_CHARS),
        ip,
        limit_key,
        secure,
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !tokens_match(&f.login_token, &expected) {
        return Ok(attempt.retry(
            "The login form expired or came from another site. Please try again.",
            StatusCode::FORBIDDEN,
        ));
    }
    let claimed = match attempt.claim(&state).await? {
        Ok(id) => id,
        Err(limited) => return Ok(limited),
    };

    // No pooled connection is held while the password is checked: a login
    // flood would otherwise hold every one while it waits for hashing.
    let user = store::users::find(&mut *state.db().acquire().await?, &attempt.username).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let Ok(ok) = verify_pooled(hash, f.password).await else {
        return Ok(attempt.busy());
    };
    let mut conn = state.db().acquire().await?;
    if ok {
        store::users::mark_succeeded(&mut conn, claimed).await?;
    }
    let Some(user) = user.filter(|_| ok) else {
        let n = store::audit::record_failed_login(
            &mut conn,
            &attempt.username,
            &attempt.ip,
            store::audit::FAILED_LOGINS_KEPT,
        )
        .await?;
        // Logged at the 1st, 2nd, 4th, 8th… failure of a name from an
        // address in the hour: a flood cannot grow the log with it.
        if n.count_ones() == 1 {
            tracing::warn!(user = %Escaped(&attempt.username), ip = %attempt.ip, attempts = n, "failed admin login");
        }
        return Ok(attempt.retry("Wrong user name or password.", StatusCode::UNAUTHORIZED));
    };
    attempt.start_session(&mut conn, &headers, &user).await
}

/// One login attempt, as far as the answer to it needs.
struct Attempt {
    next: String,
    username: String,
    ip: String,
    /// What the per-address limit counts (`domain::network::address_key`).
    limit_key: String,
    secure: bool,
}

impl Attempt {
    /// The login page again, with `error` and a fresh form token.
    fn retry(&self, error: &str, status: StatusCode) -> Response {
        login_page(
            status,
            LoginPage {
                next: self.next.clone(),
                username: self.username.clone(),
                error: Some(error.to_string()),
                notice: None,
                token: random_secret(16),
            },
            self.secure,
        )
    }

    /// Every password check is taken: the login is refused for now,
    /// clearly, instead of queueing without bound.
    fn busy(&self) -> Response {
        let mut r = self.retry(
            "Too many logins at once. Please try again in a few seconds.",
            StatusCode::SERVICE_UNAVAILABLE,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(5));
        r
    }

    /// Records the attempt (as failed until the password matches) and
    /// gives its id, or the answer for an address or user name over its
    /// limit.
    async fn claim(&self, state: &AppState) -> Result<std::result::Result<i64, Response>> {
        let now = store::now_ms();
        let limits = store::users::Limits {
            since_ms: now - WINDOW_MS,
            per_ip: MAX_PER_IP,
            per_user: MAX_PER_USER,
        };
        let claim =
            store::users::claim_attempt(state.db(), &self.limit_key, &self.username, limits)
                .await?;
        let oldest = match claim {
            store::users::Claim::Allowed(id) => return Ok(Ok(id)),
            store::users::Claim::Limited(oldest) => oldest,
        };
        let wait_s = ((oldest.unwrap_or(now) + WINDOW_MS - now) / 1000).max(1);
        let mut r = self.retry(
            &format!(
                "Too many failed logins. Try again in {} minutes.",
                (wait_s + 59) / 60
            ),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait_s));
        Ok(Err(r))
    }

    /// Issues a new session for `user` and sends them on to `next`.
    async fn start_session(
        &self,
        conn: &mut sqlx::SqliteConnection,
        headers: &HeaderMap,
        user: &store::users::UserRow,
    ) -> Result<Response> {
        // Rotate: whatever session cookie came in is dropped, a new one issued.
        if let Some(old) = cookie(headers, SESSION_COOKIE) {
            store::sessions::delete(conn, &old).await?;
        }
        let token = random_secret(32);
        store::sessions::create(conn, &token, user.id, &random_secret(32)).await?;
        store::sessions::prune(conn, super::IDLE_TIMEOUT_MS).await?;
        let entry = Entry::new(&user.name, Action::Login, Kind::Session, &self.ip);
        store::audit::record(conn, &entry).await?;
        tracing::info!(user = %Escaped(&user.name), ip = %self.ip, "admin login");
        let mut r = Redirect::to(&self.next).into_response();
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, Some(&token), self.secure),
        );
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(LOGIN_COOKIE, None, self.secure),
        );
        Ok(r)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct LogoutForm {
    csrf_token: String,
}

async fn logout(
    State(state): State<AppState>,
    user: AdminUser,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut conn = state.db().acquire().await?;
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        store::sessions::delete(&mut conn, &token).await?;
    }
    let entry = Entry::new(&user.name, Action::Logout, Kind::Session, &user.name);
    store::audit::record(&mut conn, &entry).await?;
    let mut r = redirect_with_flash("/admin/login", "You have logged out.");
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, None, false));
    Ok(r)
}
