//! What the worker's probes read: when its heartbeat last reached the database, and whether it
//! takes work. Kubernetes restarts a worker whose liveness fails, so liveness follows the
//! heartbeat the fleet's reapers watch: a worker the fleet presumes dead is restarted too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared between the worker's loops and its HTTP probes; cheap to clone.
#[derive(Clone, Debug)]
pub struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    started: Instant,
    /// Milliseconds after `started` of the last heartbeat that reached the database.
    last_beat_ms: AtomicU64,
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(Inner {
            started: Instant::now(),
            last_beat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
        }))
    }
}

impl Health {
    /// A heartbeat (or the registration) reached the database.
    pub fn beat(&self) {
        let ms = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether the worker claims new work (false before registration and once shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.0.ready.load(Ordering::Relaxed)
    }

    /// How long since the last heartbeat reached the database (since start before the first).
    pub fn silence(&self) -> Duration {
        let last = Duration::from_millis(self.0.last_beat_ms.load(Ordering::Relaxed));
        self.0.started.elapsed().saturating_sub(last)
    }

    /// Alive while a heartbeat reached the database within `within`.
    pub fn is_live(&self, within: Duration) -> bool {
        self.silence() <= within
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_follows_the_heartbeat() {
        let h = Health::default();
        assert!(h.is_live(Duration::from_secs(1)), "a start-up grace");
        assert!(!h.is_ready());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.is_live(Duration::from_millis(30)), "no beat yet");
        h.beat();
        assert!(h.is_live(Duration::from_millis(30)));
        h.set_ready(true);
        assert!(h.is_ready());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!h.is_live(Duration::from_millis(30)), "beats stopped");
    }
}
