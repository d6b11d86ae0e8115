//! The audit log, newest first, showing for updates only what changed.

use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

use super::{Ctx, when};
use crate::error::Result;
use crate::store;
use crate::web::AppState;

pub const PAGE_SIZE: i64 = 50;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/audit", get(page))
}

pub struct Line {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub changes: Vec<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "admin/audit.html")]
struct Page {
    ctx: Ctx,
    lines: Vec<Line>,
    page: i64,
    pages: i64,
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<i64>,
}

fn fields(text: &Option<String>) -> Vec<(String, String)> {
    text.as_deref()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// "key: old → new" for each field that differs.
pub fn changes(before: &Option<String>, after: &Option<String>) -> Vec<String> {
    let (b, a) = (fields(before), fields(after));
    let mut out = Vec::new();
    for (k, v) in &a {
        match b.iter().find(|(bk, _)| bk == k) {
            Some((_, old)) if old == v => {}
            Some((_, old)) => out.push(format!("{k}: {old} → {v}")),
            None if before.is_some() => out.push(format!("{k}: (none) → {v}")),
            None => out.push(format!("{k} = {v}")),
        }
    }
    for (k, old) in &b {
        if !a.iter().any(|(ak, _)| ak == k) {
            out.push(if after.is_some() {
                format!("{k}: {old} → (none)")
            } else {
                format!("{k} was {old}")
            });
        }
    }
    out
}

async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(q): Query<PageQuery>,
) -> Result<impl IntoResponse> {
    let mut conn = state.db().acquire().await?;
    let total = store::audit::count(&mut conn).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let rows = store::audit::page(&mut conn, (page - 1) * PAGE_SIZE, PAGE_SIZE).await?;
    let lines = rows
        .into_iter()
        .map(|r| Line {
            when: when(r.at),
            changes: changes(&r.before, &r.after),
            actor: r.actor,
            action: r.action,
            object: format!("{} {}", r.object_kind, r.object_name),
        })
        .collect();
    Ok(Page {
        ctx,
        lines,
        page,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::changes;

    #[test]
    fn only_changed_fields_are_listed() {
        let before = Some("name = \"a\"\nweight = 100\ncountry = \"DE\"\n".to_string());
        let after = Some("name = \"a\"\nweight = 200\nmax_listeners = 5\n".to_string());
        assert_eq!(
            changes(&before, &after),
            [
                "weight: 100 → 200",
                "max_listeners: (none) → 5",
                "country: \"DE\" → (none)"
            ]
        );
        assert_eq!(changes(&None, &Some("x = 1\n".into())), ["x = 1"]);
        assert_eq!(changes(&Some("x = 1\n".into()), &None), ["x was 1"]);
    }
}
