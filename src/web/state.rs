//! What every handler shares: the [`Engine`] (settings, the store and its
//! write path, routing, the poller, GeoIP, the cluster). Handlers reach
//! the engine's methods through `Deref`; anything only the web layer
//! needs would be kept here beside it.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Settings;
use crate::domain::Clock;
use crate::engine::Engine;
use crate::web::shared::Renderings;

/// Cheap to clone; handlers get it through axum's `State`.
#[derive(Clone)]
pub struct AppState(Engine, Arc<AtomicBool>, Arc<Renderings>);

impl AppState {
    pub async fn new(settings: Settings, clock: Clock) -> anyhow::Result<AppState> {
        let renderings = Renderings::new(settings.shared_render_age);
        let engine = Engine::open(settings, clock).await?;
        Ok(AppState(
            engine,
            Arc::new(AtomicBool::new(false)),
            Arc::new(renderings),
        ))
    }

    pub fn engine(&self) -> &Engine {
        &self.0
    }

    /// Shutdown has begun: requests in flight finish, but `/readyz` says
    /// 503 so a load balancer in front sends new ones elsewhere.
    pub fn mark_stopping(&self) {
        self.1.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.1.load(Ordering::Relaxed)
    }

    /// The answers shared by every request of a second (`web::shared`).
    pub fn renderings(&self) -> &Renderings {
        &self.2
    }
}

impl Deref for AppState {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.0
    }
}
