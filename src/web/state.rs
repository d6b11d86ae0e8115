//! What every handler shares: the [`Engine`] (settings, the store and its
//! write path, routing, the poller, GeoIP, the cluster). Handlers reach
//! the engine's methods through `Deref`; anything only the web layer
//! needs would be kept here beside it.

use std::ops::Deref;

use crate::config::Settings;
use crate::domain::Clock;
use crate::engine::Engine;

/// Cheap to clone; handlers get it through axum's `State`.
#[derive(Clone)]
pub struct AppState(Engine);

impl AppState {
    pub async fn new(settings: Settings, clock: Clock) -> anyhow::Result<AppState> {
        Ok(AppState(Engine::open(settings, clock).await?))
    }

    pub fn engine(&self) -> &Engine {
        &self.0
    }
}

impl Deref for AppState {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.0
    }
}
