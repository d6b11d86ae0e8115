//! Answers that anyone may ask for and that cost a walk over every relay
//! (`/metrics`, the public `/api/status`): rendered at most once a second
//! on a blocking thread and shared by every request in that second, so a
//! crowd of scrapers costs one rendering, never one per request.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Mutex;

/// One shared rendering and when it was made.
#[derive(Debug)]
pub struct Shared {
    max_age: Duration,
    last: Mutex<Option<(Instant, Bytes)>>,
}

impl Shared {
    /// Renderings reused for `max_age` (`Settings::shared_render_age`).
    pub fn new(max_age: Duration) -> Shared {
        Shared {
            max_age,
            last: Mutex::new(None),
        }
    }

    /// The rendering of the last second, or a new one from `render`. While
    /// one request renders, the others wait for it instead of rendering
    /// too (the lock is held across the rendering).
    pub async fn get<E: Send + 'static>(
        &self,
        render: impl FnOnce() -> Result<Bytes, E> + Send + 'static,
    ) -> Result<Bytes, Rendering<E>> {
        let mut last = self.last.lock().await;
        if let Some((at, body)) = last.as_ref()
            && at.elapsed() < self.max_age
        {
            return Ok(body.clone());
        }
        let body = tokio::task::spawn_blocking(render)
            .await
            .map_err(|_| Rendering::Panicked)?
            .map_err(Rendering::Failed)?;
        *last = Some((Instant::now(), body.clone()));
        Ok(body)
    }
}

/// Why no rendering could be had.
#[derive(Debug)]
pub enum Rendering<E> {
    Failed(E),
    Panicked,
}

/// The renderings every request shares, one per answer.
#[derive(Debug)]
pub struct Renderings {
    pub metrics: Shared,
    pub status: Shared,
}

impl Renderings {
    pub fn new(max_age: Duration) -> Renderings {
        Renderings {
            metrics: Shared::new(max_age),
            status: Shared::new(max_age),
        }
    }
}
