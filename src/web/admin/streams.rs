//! Streams and, on each stream's page, its mounts (server + mount path).

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::chart::Range;
use super::dashboard::{self, StreamCard};
use super::widgets::{ConfirmPage, CsrfForm, or_unlimited};
use super::{AdminUser, Ctx, conflict_to_field, count, redirect_with_flash};
use crate::domain::{FieldErrors, MountInput, StreamInput};
use crate::error::{Error, Result};
use crate::routing::Routing;
use crate::routing::condition::Condition;
use crate::routing::select::free_slots;
use crate::store::{self, changes};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/streams", get(list))
        .route("/admin/streams/new", get(new_form).post(create))
        .route("/admin/streams/{id}/edit", get(edit_form).post(update))
        .route(
            "/admin/streams/{id}/delete",
            get(confirm_delete).post(delete),
        )
        .route("/admin/streams/{id}/mounts", post(add_mount))
        .route(
            "/admin/mounts/{id}/delete",
            get(confirm_delete_mount).post(delete_mount),
        )
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StreamForm {
    pub name: String,
    pub description: String,
    pub fallback_url: String,
    /// Comma- or space-separated ISO codes; empty = no restriction.
    pub allowed_countries: String,
    pub allow_unknown: Option<String>,
    pub require_https: Option<String>,
    pub bitrate_kbps: String,
    pub csrf_token: String,
}

impl StreamForm {
    pub(crate) fn input(&self) -> StreamInput {
        let countries: Vec<String> = self
            .allowed_countries
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        StreamInput {
            name: self.name.clone(),
            description: Some(self.description.clone()),
            fallback_url: Some(self.fallback_url.clone()),
            allowed_countries: (!countries.is_empty()).then_some(countries),
            allow_unknown: Some(self.allow_unknown.is_some()),
            require_https: Some(self.require_https.is_some()),
            // Not a number: 0, which the stream's parse refuses by name.
            bitrate_kbps: Some(self.bitrate_kbps.trim())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse().unwrap_or(0)),
            mounts: None,
        }
    }

    fn from_row(r: &store::streams::StreamRow) -> StreamForm {
        StreamForm {
            name: r.name.clone(),
            description: r.description.clone(),
            fallback_url: r.fallback_url.clone().unwrap_or_default(),
            allowed_countries: r
                .allowed_countries
                .clone()
                .unwrap_or_default()
                .replace(',', ", "),
            allow_unknown: r.allow_unknown.then(|| "on".into()),
            require_https: r.require_https.then(|| "on".into()),
            bitrate_kbps: r.bitrate_kbps.map(|v| v.to_string()).unwrap_or_default(),
            csrf_token: String::new(),
        }
    }
}

pub struct StreamLine {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub mounts: usize,
    pub listeners: u64,
    pub free: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/streams.html")]
struct ListPage {
    ctx: Ctx,
    streams: Vec<StreamLine>,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> impl IntoResponse {
    let snap = state.snapshot();
    let rows = crate::web::stream_list::stream_rows(&state, &snap);
    let streams = snap
        .streams
        .iter()
        .zip(rows)
        .map(|(s, r)| StreamLine {
            id: s.id,
            name: s.name.clone(),
            description: s.description.clone(),
            mounts: s.mounts.len(),
            listeners: r.listeners,
            free: r.free,
        })
        .collect();
    ListPage { ctx, streams }
}

pub struct MountLine {
    pub id: i64,
    pub server: String,
    pub mount: String,
    pub condition: Condition,
    pub listeners: String,
    pub max: String,
    pub free: String,
    pub reserved: u64,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/stream_form.html")]
struct FormPage {
    ctx: Ctx,
    id: Option<i64>,
    form: StreamForm,
    errors: FieldErrors,
    mounts: Vec<MountLine>,
    servers: Vec<String>,
    mount_form: MountForm,
    mount_errors: FieldErrors,
    /// The stream's state and numbers now (none on the new-stream form).
    card: Option<StreamCard>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MountForm {
    pub server: String,
    pub mount: String,
    /// Blank: the relay's own limit.
    #[serde(default)]
    pub max_listeners: String,
    pub csrf_token: String,
}

async fn new_form(ctx: Ctx) -> Response {
    FormPage {
        ctx,
        id: None,
        form: StreamForm {
            allow_unknown: Some("on".into()),
            ..Default::default()
        },
        errors: FieldErrors::default(),
        mounts: vec![],
        servers: vec![],
        mount_form: MountForm::default(),
        mount_errors: FieldErrors::default(),
        card: None,
    }
    .into_response()
}

async fn create(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Form(form): Form<StreamForm>,
) -> Result<Response> {
    user.check_csrf(&form.csrf_token)?;
    let invalid = |errors: FieldErrors, form: StreamForm| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            FormPage {
                ctx: ctx.clone(),
                id: None,
                form,
                errors,
                mounts: vec![],
                servers: vec![],
                mount_form: MountForm::default(),
                mount_errors: FieldErrors::default(),
                card: None,
            },
        )
            .into_response()
    };
    let spec = match form.input().parse() {
        Ok(s) => s,
        Err(e) => return Ok(invalid(e, form)),
    };
    let mut tx = state.begin(&user.name).await?;
    let id = match changes::create_stream(&mut tx, &spec).await {
        Ok(id) => id,
        Err(e) => return Ok(invalid(conflict_to_field(e)?, form)),
    };
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        &format!("/admin/streams/{id}/edit"),
        &format!("Stream {} created. Add its mounts below.", spec.name),
    ))
}

async fn page_for(
    state: &AppState,
    ctx: Ctx,
    id: i64,
    form: Option<StreamForm>,
    errors: FieldErrors,
    mount_form: MountForm,
    mount_errors: FieldErrors,
) -> Result<FormPage> {
    let mut conn = state.db().acquire().await?;
    let row = store::streams::get(&mut conn, id).await?;
    let rows = store::mounts::for_stream(&mut conn, id).await?;
    let servers = store::servers::list(&mut conn).await?;
    drop(conn);
    let now = dashboard::build(state, Range::Day, false).await?;
    let card = now.streams.into_iter().find(|c| c.id == id);
    let Routing {
        snap,
        now_s,
        ttl_s: ttl,
    } = state.routing();
    let mounts = rows
        .iter()
        .map(|r| {
            let entry = snap.mounts.iter().find(|m| m.id == r.id);
            let (free, reserved) = entry
                .map(|m| free_slots(m, &snap.servers[m.server], now_s, ttl))
                .unwrap_or((Some(0), 0));
            // A down or never-polled relay's last numbers say nothing now.
            let known = entry.filter(|m| m.live && snap.servers[m.server].health.is_up());
            let shown = |v: String| known.map_or_else(|| "—".to_string(), |_| v);
            MountLine {
                id: r.id,
                server: r.server_name.clone(),
                mount: r.mount.clone(),
                condition: now
                    .mounts
                    .iter()
                    .find(|m| m.id == r.id)
                    .map_or(Condition::Unknown, |m| m.condition),
                listeners: shown(entry.map_or(0, |m| m.listeners).to_string()),
                max: shown(or_unlimited(entry.and_then(|m| m.max))),
                free: shown(or_unlimited(free)),
                reserved,
            }
        })
        .collect();
    Ok(FormPage {
        ctx,
        id: Some(id),
        form: form.unwrap_or_else(|| StreamForm::from_row(&row)),
        errors,
        mounts,
        servers: servers.into_iter().map(|s| s.name).collect(),
        mount_form,
        mount_errors,
        card,
    })
}

async fn edit_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<Response> {
    Ok(page_for(
        &state,
        ctx,
        id,
        None,
        FieldErrors::default(),
        MountForm::default(),
        FieldErrors::default(),
    )
    .await?
    .into_response())
}

async fn update(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(form): Form<StreamForm>,
) -> Result<Response> {
    user.check_csrf(&form.csrf_token)?;
    let spec = match form.input().parse() {
        Ok(s) => s,
        Err(errors) => {
            let page = page_for(
                &state,
                ctx,
                id,
                Some(form),
                errors,
                MountForm::default(),
                FieldErrors::default(),
            )
            .await?;
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let mut tx = state.begin(&user.name).await?;
    if let Err(e) = changes::update_stream(&mut tx, id, &spec).await {
        drop(tx);
        let errors = conflict_to_field(e)?;
        let page = page_for(
            &state,
            ctx,
            id,
            Some(form),
            errors,
            MountForm::default(),
            FieldErrors::default(),
        )
        .await?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        &format!("/admin/streams/{id}/edit"),
        &format!("Stream {} saved.", spec.name),
    ))
}

async fn confirm_delete(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse> {
    let mut conn = state.db().acquire().await?;
    let row = store::streams::get(&mut conn, id).await?;
    let mounts = store::mounts::for_stream(&mut conn, id).await?;
    Ok(ConfirmPage {
        ctx,
        kind: "stream",
        name: row.name,
        action: format!("/admin/streams/{id}/delete"),
        cancel: format!("/admin/streams/{id}/edit"),
        goes_with: mounts
            .iter()
            .map(|m| format!("mount {} on {}", m.mount, m.server_name))
            .collect(),
    })
}

async fn delete(
    State(state): State<AppState>,
    user: AdminUser,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut tx = state.begin(&user.name).await?;
    let (row, mounts) = changes::delete_stream(&mut tx, id).await?;
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        "/admin/streams",
        &format!(
            "Stream {} deleted with {}.",
            row.name,
            count(mounts.len(), "mount")
        ),
    ))
}

async fn add_mount(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(form): Form<MountForm>,
) -> Result<Response> {
    user.check_csrf(&form.csrf_token)?;
    let max_listeners = match form.max_listeners.trim() {
        "" => None,
        // Out of range or not a number: the parse below names the field.
        t => Some(t.parse::<i64>().unwrap_or(-1)),
    };
    let input = MountInput {
        server: form.server.clone(),
        mount: form.mount.clone(),
        max_listeners,
    };
    let again = |errors: FieldErrors| async {
        let page = page_for(
            &state,
            ctx.clone(),
            id,
            None,
            FieldErrors::default(),
            form.clone(),
            errors,
        )
        .await?;
        Ok::<_, Error>((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
    };
    let spec = match input.parse() {
        Ok(s) => s,
        Err(e) => return again(e).await,
    };
    let mut tx = state.begin(&user.name).await?;
    let Some(server) = store::servers::find_by_name(tx.conn(), spec.server.as_str()).await? else {
        let mut e = FieldErrors::default();
        e.push(
            "server",
            format!("no server named {:?}", spec.server.as_str()),
        );
        drop(tx);
        return again(e).await;
    };
    let added = changes::add_mount(&mut tx, id, server.id, &spec.mount).await;
    let added = match added {
        Ok(row) => changes::set_mount_limit(&mut tx, row.id, spec.max_listeners).await,
        Err(e) => Err(e),
    };
    if let Err(e) = added {
        drop(tx);
        let mut errors = FieldErrors::default();
        match e {
            crate::store::Error::Conflict { .. } => errors.push(
                "mount",
                format!(
                    "{} on {} already belongs to a stream",
                    spec.mount, server.name
                ),
            ),
            other => return Err(other.into()),
        }
        return again(errors).await;
    }
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        &format!("/admin/streams/{id}/edit"),
        &format!("Mount {} on {} added.", spec.mount, server.name),
    ))
}

async fn confirm_delete_mount(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse> {
    let mut conn = state.db().acquire().await?;
    let m = store::mounts::get(&mut conn, id).await?;
    Ok(ConfirmPage {
        ctx,
        kind: "mount",
        name: format!("{} on {}", m.mount, m.server_name),
        action: format!("/admin/mounts/{id}/delete"),
        cancel: format!("/admin/streams/{}/edit", m.stream_id),
        goes_with: vec![],
    })
}

async fn delete_mount(
    State(state): State<AppState>,
    user: AdminUser,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let mut tx = state.begin(&user.name).await?;
    let m = changes::remove_mount(&mut tx, id).await?;
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        &format!("/admin/streams/{}/edit", m.stream_id),
        &format!("Mount {} on {} removed.", m.mount, m.server_name),
    ))
}
