//! Login and logout. A login always issues a fresh session id (so a
//! session id planted before login is worthless), and failed logins are
//! rate-limited per client address and per user name.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::FromRequest;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{
    AdminUser, FLASH_COOKIE, Flash, Notice, SESSION_COOKIE, client, cookie, is_https,
    redirect_with_flash, safe_next, set_cookie,
};
use crate::error::{Error, Result};
use crate::store;
use crate::store::audit::{Action, Entry, Kind};
use crate::users::{random_secret, verify_nothing, verify_password};
use crate::web::AppState;
use crate::web::csrf::tokens_match;
use crate::web::state::blocking;

const LOGIN_COOKIE: &str = "icb_login";
/// Failed logins counted over this window…
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// …may be at most this many from one address…
pub const MAX_PER_IP: i64 = 5;
/// …or for one user name (from anywhere).
pub const MAX_PER_USER: i64 = 10;

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
    let ip = from.map(|c| c.ip.to_string()).unwrap_or_default();
    let headers: HeaderMap = req.headers().clone();
    let Form(f): Form<LoginForm> = Form::from_request(req, &state)
        .await
        .map_err(|e| Error::BadRequest(format!("bad login form: {e}")))?;
    let next = safe_next(Some(&f.next));
    let username = f.username.trim().to_string();
    let retry = |error: &str, status: StatusCode| {
        login_page(
            status,
            LoginPage {
                next: next.clone(),
                username: username.clone(),
                error: Some(error.to_string()),
                notice: None,
                token: random_secret(16),
            },
            secure,
        )
    };
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !tokens_match(&f.login_token, &expected) {
        return Ok(retry(
            "The login form expired or came from another site. Please try again.",
            StatusCode::FORBIDDEN,
        ));
    }

    let mut conn = state.db().acquire().await?;
    let now = store::now_ms();
    let (by_ip, by_user, oldest) =
        store::users::recent_failures(&mut conn, &ip, &username, now - WINDOW_MS).await?;
    if by_ip >= MAX_PER_IP || by_user >= MAX_PER_USER {
        let wait_s = ((oldest.unwrap_or(now) + WINDOW_MS - now) / 1000).max(1);
        let mut r = retry(
            &format!(
                "Too many failed logins. Try again in {} minutes.",
                (wait_s + 59) / 60
            ),
            StatusCode::TOO_MANY_REQUESTS,
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            wait_s.to_string().parse().expect("digits"),
        );
        return Ok(r);
    }

    let user = store::users::find(&mut conn, &username).await?;
    // argon2 is deliberately slow: off the async workers, so a login
    // flood cannot hold up redirects.
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let password = f.password.clone();
    let ok = blocking(move || match hash {
        Some(h) => verify_password(&h, &password),
        None => {
            verify_nothing(&password);
            false
        }
    })
    .await?;
    store::users::record_attempt(&mut conn, &ip, &username, ok).await?;
    let Some(user) = user.filter(|_| ok) else {
        let entry = Entry::new(&username, Action::LoginFailed, Kind::Session, &ip);
        store::audit::record(&mut conn, &entry).await?;
        tracing::warn!(user = %username, %ip, "failed admin login");
        return Ok(retry(
            "Wrong user name or password.",
            StatusCode::UNAUTHORIZED,
        ));
    };

    // Rotate: whatever session cookie came in is dropped, a new one issued.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        store::sessions::delete(&mut conn, &old).await?;
    }
    let token = random_secret(32);
    store::sessions::create(&mut conn, &token, user.id, &random_secret(32)).await?;
    store::sessions::prune(&mut conn, super::IDLE_TIMEOUT_MS).await?;
    let entry = Entry::new(&user.name, Action::Login, Kind::Session, &ip);
    store::audit::record(&mut conn, &entry).await?;
    tracing::info!(user = %user.name, %ip, "admin login");
    let mut r = Redirect::to(&next).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, Some(&token), secure),
    );
    r.headers_mut()
        .append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, None, secure));
    Ok(r)
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
