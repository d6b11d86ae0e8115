//! API tokens for `/api/v1`: list, make (the secret is shown on the answer
//! page this once; only its hash is kept) and revoke. Audited as the admin
//! user who did it.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::widgets::CsrfForm;
use super::{AdminUser, Ctx, conflict_to_field, redirect_with_flash, redirect_with_problem, when};
use crate::domain::FieldErrors;
use crate::error::{Error, Result};
use crate::store::changes;
use crate::store::tokens::{self, Scope};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/tokens", get(list).post(add))
        .route("/admin/tokens/{name}/delete", post(remove))
}

pub struct TokenLine {
    pub name: String,
    pub scope: String,
    pub streams: String,
    pub created: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/tokens.html")]
struct Page {
    ctx: Ctx,
    tokens: Vec<TokenLine>,
    form: TokenForm,
    errors: FieldErrors,
    /// A token just made: (name, secret), shown this once.
    made: Option<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenForm {
    csrf_token: String,
    name: String,
    scope: String,
    streams: String,
}

async fn page(
    state: &AppState,
    ctx: Ctx,
    form: TokenForm,
    errors: FieldErrors,
    made: Option<(String, String)>,
) -> Result<Page> {
    let mut conn = state.db().acquire().await?;
    let tokens = tokens::list(&mut conn)
        .await?
        .into_iter()
        .map(|t| TokenLine {
            streams: t.streams().join(", "),
            created: when(t.created_at),
            scope: t.scope,
            name: t.name,
        })
        .collect();
    Ok(Page {
        ctx,
        tokens,
        form,
        errors,
        made,
    })
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> Result<impl IntoResponse> {
    let form = TokenForm {
        scope: "read".into(),
        ..Default::default()
    };
    page(&state, ctx, form, FieldErrors::default(), None).await
}

/// Makes a token and answers with the page that shows it: no redirect, so
/// the secret travels once, in this answer, and sits in no cookie or URL.
async fn add(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Form(form): Form<TokenForm>,
) -> Result<Response> {
    user.check_csrf(&form.csrf_token)?;
    let refused = |form, errors| async {
        let p = page(&state, ctx.clone(), form, errors, None).await?;
        Ok::<_, Error>((StatusCode::UNPROCESSABLE_ENTITY, p).into_response())
    };
    let scope = match Scope::parse(&form.scope) {
        Ok(s) => s,
        Err(m) => {
            let mut e = FieldErrors::default();
            e.push("scope", m);
            return refused(form, e).await;
        }
    };
    let (name, streams) =
        match tokens::check(&form.name, scope, std::slice::from_ref(&form.streams)) {
            Ok(v) => v,
            Err(e) => return refused(form, e).await,
        };
    let secret = crate::users::api_token_secret();
    let mut tx = state.begin(&user.name).await?;
    match changes::create_token(&mut tx, &name, scope, &streams, &secret).await {
        Ok(_) => {}
        Err(e) => {
            drop(tx);
            return refused(form, conflict_to_field(e)?).await;
        }
    }
    state.commit(tx).await?;
    let made = Some((name.to_string(), secret));
    let fresh = TokenForm {
        scope: "read".into(),
        ..Default::default()
    };
    let p = page(&state, ctx, fresh, FieldErrors::default(), made).await?;
    Ok(([("cache-control", "no-store")], p).into_response())
}

async fn remove(
    State(state): State<AppState>,
    user: AdminUser,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut tx = state.begin(&user.name).await?;
    match changes::delete_token(&mut tx, &name).await {
        Ok(()) => {}
        Err(crate::store::Error::NotFound(why)) => {
            drop(tx);
            return Ok(redirect_with_problem("/admin/tokens", &why));
        }
        Err(e) => return Err(e.into()),
    }
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        "/admin/tokens",
        &format!("Token {name} revoked."),
    ))
}
