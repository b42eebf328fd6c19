//! Counts in a sliding window per key, in one API process, for the limits that leave no rows to
//! count (guest sessions per address, file checks per user; jobs are counted from their rows).
//! A few timestamps per key is all this needs, so it is written here rather than taken from a
//! rate-limiting crate built around per-request middleware.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// At most `limit` events per key in the last `WINDOW_SECS` seconds; at most `MAX_KEYS` keys are
/// remembered (past that, keys with no event in the window are dropped first).
#[derive(Clone)]
pub struct SlidingWindow<K, const WINDOW_SECS: u64, const MAX_KEYS: usize> {
    seen: Arc<Mutex<HashMap<K, VecDeque<Instant>>>>,
}

impl<K, const W: u64, const M: usize> Default for SlidingWindow<K, W, M> {
    fn default() -> Self {
        Self {
            seen: Arc::default(),
        }
    }
}

impl<K: Eq + Hash, const WINDOW_SECS: u64, const MAX_KEYS: usize>
    SlidingWindow<K, WINDOW_SECS, MAX_KEYS>
{
    /// The window the limit counts in.
    pub const WINDOW: Duration = Duration::from_secs(WINDOW_SECS);

    /// Counts an event for `key` and returns `Ok`, or how long until one fits (`limit` 0: no
    /// limit).
    pub(crate) fn admit(&self, key: K, limit: u32, now: Instant) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let window = Self::WINDOW;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() >= MAX_KEYS {
            seen.retain(|_, times| times.back().is_some_and(|t| now - *t < window));
        }
        let times = seen.entry(key).or_default();
        while times.front().is_some_and(|t| now - *t >= window) {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now - oldest));
        }
        times.push_back(now);
        Ok(())
    }
}
