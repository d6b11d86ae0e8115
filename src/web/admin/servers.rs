//! Servers: list, create, edit (with drain status and the mounts the relay
//! reports), delete with confirmation, and mount discovery.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::widgets::{
    ConfirmPage, CsrfForm, ServerLine, UNKNOWN, location_text, or_unlimited, server_lines,
};
use super::{AdminUser, Ctx, conflict_to_field, count, redirect_with_flash, redirect_with_problem};
use crate::domain::{FieldErrors, MountPath, Secret, ServerInput, TokenChange, policy};
use crate::error::{Error, Result};
use crate::store::{self, changes};
use crate::web::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/servers", get(list))
        .route("/admin/servers/new", get(new_form).post(create))
        .route("/admin/servers/{id}/edit", get(edit_form).post(update))
        .route(
            "/admin/servers/{id}/delete",
            get(confirm_delete).post(delete),
        )
        .route("/admin/servers/{id}/drain", post(drain))
        .route(
            "/admin/servers/{id}/discover",
            get(discover).post(add_discovered),
        )
}

/// What the form submits: all text, so bad numbers can be reported on
/// their field instead of failing the whole request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerForm {
    pub name: String,
    pub url: String,
    pub https_url: String,
    pub poll_url: String,
    pub country: String,
    pub latitude: String,
    pub longitude: String,
    pub max_listeners: String,
    pub weight: String,
    pub enabled: Option<String>,
    /// Write-only: blank keeps the token the server has; never shown back.
    pub callback_token: Secret,
    pub remove_callback_token: Option<String>,
    pub tier: String,
    /// Ticked: never polled (`poll = false`); absent means polled, so a
    /// form without the box keeps polling.
    pub no_poll: Option<String>,
    /// `4`, `6` or `4, 6`; blank = both.
    pub ip_versions: String,
    pub asns: String,
    pub only_asns: String,
    pub only_prefixes: String,
    pub max_mbps: String,
    pub csrf_token: String,
}

fn number<T: std::str::FromStr>(
    e: &mut FieldErrors,
    field: &'static str,
    raw: &str,
    what: &str,
) -> Option<T> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    match raw.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            e.push(field, format!("must be {what}"));
            None
        }
    }
}

/// AS numbers as typed (`3320, AS8881`); blank = none.
fn asn_list(e: &mut FieldErrors, field: &'static str, raw: &str) -> Option<Vec<i64>> {
    match policy::split_asns(raw) {
        Ok(l) => (!l.is_empty()).then_some(l),
        Err(m) => {
            e.push(field, m);
            None
        }
    }
}

fn opt(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl ServerForm {
    pub(crate) fn parse(
        &self,
    ) -> std::result::Result<(crate::domain::ServerSpec, TokenChange), FieldErrors> {
        let mut e = FieldErrors::default();
        let token = if self.remove_callback_token.is_some() {
            TokenChange::Remove
        } else if self.callback_token.expose().trim().is_empty() {
            TokenChange::Keep
        } else {
            match TokenChange::parse(Some(&self.callback_token)) {
                Ok(t) => t,
                Err(m) => {
                    e.push("callback_token", m);
                    TokenChange::Keep
                }
            }
        };
        let input = ServerInput {
            name: self.name.clone(),
            url: self.url.clone(),
            https_url: opt(&self.https_url),
            poll_url: opt(&self.poll_url),
            country: opt(&self.country),
            latitude: number(&mut e, "latitude", &self.latitude, "a number such as 50.11"),
            longitude: number(
                &mut e,
                "longitude",
                &self.longitude,
                "a number such as 8.68",
            ),
            max_listeners: number(
                &mut e,
                "max_listeners",
                &self.max_listeners,
                "a whole number",
            ),
            weight: number(&mut e, "weight", &self.weight, "a whole number"),
            enabled: Some(self.enabled.is_some()),
            callback_token: None,
            tier: number(&mut e, "tier", &self.tier, "a whole number"),
            poll: Some(self.no_poll.is_none()),
            ip_versions: opt(&self.ip_versions).map(|v| policy::split_list(&v)),
            asns: asn_list(&mut e, "asns", &self.asns),
            only_asns: asn_list(&mut e, "only_asns", &self.only_asns),
            only_prefixes: opt(&self.only_prefixes).map(|v| policy::split_list(&v)),
            max_mbps: number(&mut e, "max_mbps", &self.max_mbps, "a number such as 100"),
        };
        match input.parse() {
            Ok(spec) if e.is_empty() => Ok((spec, token)),
            Ok(_) => Err(e),
            Err(more) => {
                // Number errors come first; don't report a field twice.
                for (f, m) in more.0 {
                    if e.get(f).is_none() {
                        e.push(f, m);
                    }
                }
                Err(e)
            }
        }
    }

    fn from_row(r: &store::servers::ServerRow) -> ServerForm {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        ServerForm {
            name: r.name.clone(),
            url: r.url.clone(),
            https_url: s(&r.https_url),
            poll_url: s(&r.poll_url),
            country: s(&r.country),
            latitude: r.latitude.map(|v| v.to_string()).unwrap_or_default(),
            longitude: r.longitude.map(|v| v.to_string()).unwrap_or_default(),
            max_listeners: r.max_listeners.map(|v| v.to_string()).unwrap_or_default(),
            weight: r.weight.to_string(),
            enabled: r.enabled.then(|| "on".into()),
            tier: r.tier.to_string(),
            no_poll: (!r.poll).then(|| "on".into()),
            ip_versions: s(&r.ip_versions).replace(',', ", "),
            asns: s(&r.asns).replace(',', ", "),
            only_asns: s(&r.only_asns).replace(',', ", "),
            only_prefixes: s(&r.only_prefixes).replace(',', ", "),
            max_mbps: r.max_mbps.map(|v| v.to_string()).unwrap_or_default(),
            ..Default::default()
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/servers.html")]
struct ListPage {
    ctx: Ctx,
    servers: Vec<ServerLine>,
}

async fn list(State(state): State<AppState>, ctx: Ctx) -> impl IntoResponse {
    ListPage {
        ctx,
        servers: server_lines(&state),
    }
}

pub struct MountLine {
    /// The configured mount's id (its numbers update live); `None` for a
    /// mount the relay lists that no stream uses.
    pub id: Option<i64>,
    pub mount: String,
    pub stream: String,
    pub listeners: String,
    pub max: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/server_form.html")]
struct FormPage {
    ctx: Ctx,
    id: Option<i64>,
    form: ServerForm,
    errors: FieldErrors,
    mounts: Vec<MountLine>,
    draining: bool,
    status_line: String,
    read_via: String,
    /// Whether the server has a callback token (its value is never shown).
    has_token: bool,
    callback_url: String,
    /// The relay's state and numbers now, as the servers table shows them.
    line: Option<ServerLine>,
}

fn render(status: StatusCode, page: FormPage) -> Response {
    (status, page).into_response()
}

async fn new_form(ctx: Ctx) -> Response {
    render(
        StatusCode::OK,
        FormPage {
            ctx,
            id: None,
            form: ServerForm {
                weight: "100".into(),
                enabled: Some("on".into()),
                tier: "1".into(),
                ..Default::default()
            },
            errors: FieldErrors::default(),
            mounts: vec![],
            draining: false,
            status_line: String::new(),
            read_via: String::new(),
            has_token: false,
            callback_url: String::new(),
            line: None,
        },
    )
}

async fn create(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Form(form): Form<ServerForm>,
) -> Result<Response> {
    user.check_csrf(&form.csrf_token)?;
    let invalid = |errors: FieldErrors, form: ServerForm| {
        render(
            StatusCode::UNPROCESSABLE_ENTITY,
            FormPage {
                ctx: ctx.clone(),
                id: None,
                form,
                errors,
                mounts: vec![],
                draining: false,
                status_line: String::new(),
                read_via: String::new(),
                has_token: false,
                callback_url: String::new(),
                line: None,
            },
        )
    };
    let (spec, token) = match form.parse() {
        Ok(s) => s,
        Err(errors) => return Ok(invalid(errors, form)),
    };
    let mut tx = state.begin(&user.name).await?;
    let id = match changes::create_server(&mut tx, &spec).await {
        Ok(id) => id,
        Err(e) => return Ok(invalid(conflict_to_field(e)?, form)),
    };
    changes::set_callback_token(&mut tx, id, &token).await?;
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        &format!("/admin/servers/{id}/edit"),
        &format!(
            "Server {} created. Install xsl/load.xsl on it; it is used after its first good poll.",
            spec.name
        ),
    ))
}

async fn page_for(
    state: &AppState,
    ctx: Ctx,
    id: i64,
    form: Option<ServerForm>,
    errors: FieldErrors,
) -> Result<FormPage> {
    let mut conn = state.db().acquire().await?;
    let row = store::servers::get(&mut conn, id).await?;
    let configured = store::mounts::for_server(&mut conn, id).await?;
    let reported = store::status::mount_status_of(&mut conn, id).await?;
    let health = store::status::health_of(&mut conn, id).await?;
    let mut mounts: Vec<MountLine> = reported
        .iter()
        .map(|m| MountLine {
            id: configured.iter().find(|c| c.mount == m.mount).map(|c| c.id),
            mount: m.mount.clone(),
            stream: configured
                .iter()
                .find(|c| c.mount == m.mount)
                .map(|c| c.stream_name.clone())
                .unwrap_or_else(|| "(no stream)".into()),
            listeners: m.listeners.to_string(),
            max: or_unlimited(m.max_listeners),
        })
        .collect();
    for c in configured
        .iter()
        .filter(|c| !reported.iter().any(|m| m.mount == c.mount))
    {
        mounts.push(MountLine {
            id: Some(c.id),
            mount: c.mount.clone(),
            stream: c.stream_name.clone(),
            listeners: "not listed: source offline, or hidden?".into(),
            max: String::new(),
        });
    }
    if health.is_none() {
        // Never polled: its stored numbers (none) say nothing.
        mounts.iter_mut().for_each(|m| m.listeners = UNKNOWN.into());
    }
    let snap = state.snapshot();
    let entry = snap.servers.iter().find(|s| s.id == id);
    let location = entry.map_or_else(|| "unknown".into(), location_text);
    let read_via = entry.and_then(|s| s.source.clone()).unwrap_or_default();
    let via = if read_via.is_empty() {
        String::new()
    } else {
        format!(" · read through {read_via}")
    };
    let status_line = format!("location: {location}{via}");
    let line = server_lines(state).into_iter().find(|l| l.id == id);
    let has_token = store::servers::callback_token(&mut conn, id)
        .await?
        .is_some();
    Ok(FormPage {
        has_token,
        callback_url: format!("/icecast_balancer/relays/{}/auth", row.name),
        ctx,
        id: Some(id),
        draining: !row.enabled,
        form: form.unwrap_or_else(|| ServerForm::from_row(&row)),
        errors,
        mounts,
        status_line,
        read_via,
        line,
    })
}

async fn edit_form(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<Response> {
    Ok(render(
        StatusCode::OK,
        page_for(&state, ctx, id, None, FieldErrors::default()).await?,
    ))
}

async fn update(
    State(state): State<AppState>,
    user: AdminUser,
    ctx: Ctx,
    Path(id): Path<i64>,
    Form(form): Form<ServerForm>,
) -> Result<Response> {
    user.check_csrf(&form.csrf_token)?;
    let (spec, token) = match form.parse() {
        Ok(s) => s,
        Err(errors) => {
            let page = page_for(&state, ctx, id, Some(form), errors).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, page));
        }
    };
    let mut tx = state.begin(&user.name).await?;
    let (before, after) = match changes::update_server(&mut tx, id, &spec).await {
        Ok(both) => both,
        Err(e) => {
            drop(tx);
            let errors = conflict_to_field(e)?;
            let page = page_for(&state, ctx, id, Some(form), errors).await?;
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, page));
        }
    };
    changes::set_callback_token(&mut tx, id, &token).await?;
    state.commit(tx).await?;
    let msg = if before.enabled && !after.enabled {
        format!(
            "Server {} is draining: no new listeners are sent to it; the ones connected stay until they leave.",
            spec.name
        )
    } else {
        format!("Server {} saved.", spec.name)
    };
    Ok(redirect_with_flash(
        &format!("/admin/servers/{id}/edit"),
        &msg,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DrainForm {
    csrf_token: String,
    /// `1` drains (no new listeners), `0` takes listeners again.
    drain: String,
}

/// The drain button: the server's other settings stay as they are.
async fn drain(
    State(state): State<AppState>,
    user: AdminUser,
    Path(id): Path<i64>,
    Form(f): Form<DrainForm>,
) -> Result<Response> {
    user.check_csrf(&f.csrf_token)?;
    let drain = match f.drain.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(Error::BadRequest("drain must be 1 or 0".into())),
    };
    let mut tx = state.begin(&user.name).await?;
    let mut spec = store::servers::get(tx.conn(), id).await?.spec()?;
    spec.enabled = !drain;
    let (before, _) = changes::update_server(&mut tx, id, &spec).await?;
    state.commit(tx).await?;
    let msg = match (before.enabled, drain) {
        (true, true) => format!(
            "Server {} is draining: no new listeners are sent to it; the ones connected stay until they leave.",
            spec.name
        ),
        (false, false) => format!("Server {} takes new listeners again.", spec.name),
        (_, true) => format!("Server {} was already draining.", spec.name),
        (_, false) => format!("Server {} already takes new listeners.", spec.name),
    };
    Ok(redirect_with_flash(
        &format!("/admin/servers/{id}/edit"),
        &msg,
    ))
}

async fn confirm_delete(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse> {
    let mut conn = state.db().acquire().await?;
    let row = store::servers::get(&mut conn, id).await?;
    let mounts = store::mounts::for_server(&mut conn, id).await?;
    Ok(ConfirmPage {
        ctx,
        kind: "server",
        name: row.name,
        action: format!("/admin/servers/{id}/delete"),
        cancel: format!("/admin/servers/{id}/edit"),
        goes_with: mounts
            .iter()
            .map(|m| format!("mount {} of stream {}", m.mount, m.stream_name))
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
    let (row, mounts) = changes::delete_server(&mut tx, id).await?;
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        "/admin/servers",
        &format!(
            "Server {} deleted with {}.",
            row.name,
            count(mounts.len(), "mount")
        ),
    ))
}

pub struct Found {
    pub mount: String,
    pub listeners: u32,
    pub max: String,
    pub configured: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/discover.html")]
struct DiscoverPage {
    ctx: Ctx,
    id: i64,
    server: String,
    source: String,
    error: Option<String>,
    found: Vec<Found>,
    streams: Vec<String>,
}

async fn discover(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse> {
    let mut conn = state.db().acquire().await?;
    let row = store::servers::get(&mut conn, id).await?;
    let configured = store::mounts::for_server(&mut conn, id).await?;
    let streams = store::streams::list(&mut conn).await?;
    drop(conn);
    let (source, found, error) = match state.fetcher().usage(row.poll_base()).await {
        Ok((source, mounts)) => (
            source.to_string(),
            mounts
                .into_iter()
                .map(|m| Found {
                    configured: configured
                        .iter()
                        .find(|c| c.mount == m.mount.as_str())
                        .map(|c| c.stream_name.clone()),
                    mount: m.mount.to_string(),
                    listeners: m.listeners,
                    max: or_unlimited(m.max),
                })
                .collect(),
            None,
        ),
        Err(e) => (String::new(), vec![], Some(e.to_string())),
    };
    Ok(DiscoverPage {
        ctx,
        id,
        server: row.name,
        source,
        error,
        found,
        streams: streams.into_iter().map(|s| s.name).collect(),
    })
}

/// Adds the checked mounts to the chosen stream. The form has one `mount`
/// field per checked box, so it is read as a list of pairs.
async fn add_discovered(
    State(state): State<AppState>,
    user: AdminUser,
    Path(id): Path<i64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let field = |k: &str| {
        pairs
            .iter()
            .find(|(f, _)| f == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    user.check_csrf(field("csrf_token"))?;
    let back = format!("/admin/servers/{id}/discover");
    let mounts: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "mount")
        .map(|(_, v)| v.as_str())
        .collect();
    if mounts.is_empty() {
        return Ok(redirect_with_problem(
            &back,
            "Tick at least one mount to add.",
        ));
    }
    let mut tx = state.begin(&user.name).await?;
    let server = store::servers::get(tx.conn(), id).await?;
    let Some(stream) = store::streams::find_by_name(tx.conn(), field("stream")).await? else {
        return Ok(redirect_with_problem(
            &back,
            "Choose the stream to add the mounts to.",
        ));
    };
    for m in &mounts {
        let path =
            MountPath::parse(m).map_err(|e| Error::BadRequest(format!("mount {m:?}: {e}")))?;
        match changes::add_mount(&mut tx, stream.id, id, &path).await {
            Ok(_) => {}
            Err(crate::store::Error::Conflict { .. }) => {
                return Ok(redirect_with_problem(
                    &back,
                    &format!(
                        "{m} on {} already belongs to a stream; nothing was added.",
                        server.name
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    state.commit(tx).await?;
    Ok(redirect_with_flash(
        &format!("/admin/streams/{}/edit", stream.id),
        &format!(
            "Added {} of {} to stream {}.",
            count(mounts.len(), "mount"),
            server.name,
            stream.name
        ),
    ))
}
