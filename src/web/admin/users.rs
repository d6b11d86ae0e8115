//! Admin users: the list, adding one, resetting another's password,
//! removing one (never the last), and changing your own password (which
//! needs the current one). Every change goes through the write path, so
//! it is audited; a new password ends that user's sessions.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::widgets::{ConfirmPage, CsrfForm};
use super::{AdminUser, Ctx, redirect_with_flash, redirect_with_problem, when};
use crate::domain::{FieldErrors, Slug};
use crate::engine::blocking;
use crate::error::{Error, Result};
use crate::store::{self, changes};
use crate::users::{check_password, hash_password, verify_password};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(list).post(add))
        .route("/admin/users/password", post(change_own))
        .route("/admin/users/{name}/password", post(reset))
        .route(
            "/admin/users/{name}/delete",
            get(confirm_remove).post(remove),
        )
}

pub struct UserLine {
    pub name: String,
    pub created: String,
    pub is_you: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/users.html")]
struct Page {
    ctx: Ctx,
    users: Vec<UserLine>,
    /// The add form's name, kept when it is refused.
    new_name: String,
    add_errors: FieldErrors,
    own_errors: FieldErrors,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PasswordForm {
    csrf_token: String,
    name: String,
    password: String,
    password_again: String,
}

/// Your own password (its own field names: it shares the page with the
/// add form).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OwnForm {
    csrf_token: String,
    current: String,
    own_password: String,
    own_password_again: String,
}

async fn page(
    state: &AppState,
    ctx: Ctx,
    new_name: String,
    add: FieldErrors,
    own: FieldErrors,
) -> Result<Page> {
    let mut conn = state.db().acquire().await?;
    let users = store::users::list(&mut conn)
        .await?
        .into_iter()
        .map(|u| UserLine {
            is_you: u.name == ctx.user,
            created: when(u.created_at),
            name: u.name,
        })
        .collect();
    Ok(Page {
        ctx,
        users,
        new_name,
        add_errors: add,
        own_errors: own,
    })
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> Result<impl IntoResponse> {
    page(
        &state,
        ctx,
        String::new(),
        FieldErrors::default(),
        FieldErrors::default(),
    )
    .await
}

/// The new password twice, long enough: else a message on `fields`
/// (the password's, the repeat's).
fn new_password(
    password: &str,
    again: &str,
    fields: (&'static str, &'static str),
    errors: &mut FieldErrors,
) {
    if let Err(e) = check_password(password) {
        errors.push(fields.0, e.to_string());
    } else if password != again {
        errors.push(fields.1, "the two passwords differ".to_string());
    }
}

const FIELDS: (&str, &str) = ("password", "password_again");

async fn hashed(password: String) -> Result<String> {
    blocking(move || hash_password(&password))
        .await?
        .map_err(Error::Other)
}

async fn add(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Form(f): Form<PasswordForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut errors = FieldErrors::default();
    let name = match Slug::parse(f.name.trim()) {
        Ok(n) => Some(n),
        Err(e) => {
            errors.push("name", e.to_string());
            None
        }
    };
    new_password(&f.password, &f.password_again, FIELDS, &mut errors);
    let refused = |errors: FieldErrors| async {
        let p = page(
            &state,
            ctx.clone(),
            f.name.clone(),
            errors,
            FieldErrors::default(),
        )
        .await?;
        Ok::<_, Error>((StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
    };
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return refused(errors).await;
    };
    let hash = hashed(f.password.clone()).await?;
    let mut tx = state.begin(&user.name).await?;
    if let Err(e) = changes::create_user(&mut tx, name.as_str(), &hash).await {
        drop(tx);
        let mut errors = FieldErrors::default();
        match e {
            store::Error::Conflict { .. } => {
                errors.push("name", format!("a user named {name} already exists"))
            }
            other => return Err(other.into()),
        }
        return refused(errors).await;
    }
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        "/admin/users",
        &format!("User {name} added."),
    ))
}

/// Another user's password, set by an admin: that user's sessions end.
async fn reset(
    State(state): State<AppState>,
    user: AdminUser,
    Path(name): Path<String>,
    Form(f): Form<PasswordForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut errors = FieldErrors::default();
    new_password(&f.password, &f.password_again, FIELDS, &mut errors);
    if let Some((_, why)) = errors.0.first() {
        return Ok(redirect_with_problem(
            "/admin/users",
            &format!("The password of {name} was not changed: {why}."),
        ));
    }
    let hash = hashed(f.password.clone()).await?;
    let mut tx = state.begin(&user.name).await?;
    changes::set_password(&mut tx, &name, &hash).await?;
    state.commit(tx).await?;
    if name == user.name {
        return Ok(redirect_with_flash(
            "/admin/login",
            "Your password was changed; log in with the new one.",
        ));
    }
    Ok(redirect_with_flash(
        "/admin/users",
        &format!("Password of {name} changed; their sessions were ended."),
    ))
}

/// Your own password: the current one first, so a session left open on
/// someone else's screen cannot take the account over.
async fn change_own(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Form(f): Form<OwnForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut conn = state.db().acquire().await?;
    let stored = store::users::find(&mut conn, &user.name).await?;
    drop(conn);
    let hash = stored.map(|u| u.password_hash).unwrap_or_default();
    let current = f.current.clone();
    let mut errors = FieldErrors::default();
    if !blocking(move || verify_password(&hash, &current)).await? {
        errors.push("current", "this is not your current password".to_string());
    }
    let fields = ("own_password", "own_password_again");
    new_password(&f.own_password, &f.own_password_again, fields, &mut errors);
    if !errors.is_empty() {
        let p = page(&state, ctx, String::new(), FieldErrors::default(), errors).await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, p).into_response());
    }
    let hash = hashed(f.own_password.clone()).await?;
    let mut tx = state.begin(&user.name).await?;
    changes::set_password(&mut tx, &user.name, &hash).await?;
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        "/admin/login",
        "Your password was changed; log in with the new one.",
    ))
}

async fn confirm_remove(ctx: Ctx, Path(name): Path<String>) -> impl IntoResponse {
    ConfirmPage {
        ctx,
        kind: "user",
        action: format!("/admin/users/{name}/delete"),
        name,
        cancel: "/admin/users".into(),
        goes_with: vec!["their sessions (they are logged out)".into()],
    }
}

async fn remove(
    State(state): State<AppState>,
    user: AdminUser,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut tx = state.begin(&user.name).await?;
    match changes::delete_user(&mut tx, &name).await {
        Ok(()) => {}
        Err(store::Error::Refused(why) | store::Error::NotFound(why)) => {
            drop(tx);
            return Ok(redirect_with_problem("/admin/users", &why));
        }
        Err(e) => return Err(e.into()),
    }
    state.commit(tx).await?;
    if name == user.name {
        return Ok(redirect_with_flash(
            "/admin/login",
            &format!("User {name} removed."),
        ));
    }
    Ok(redirect_with_flash(
        "/admin/users",
        &format!("User {name} removed."),
    ))
}
