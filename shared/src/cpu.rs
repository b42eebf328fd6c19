//! Charging CPU to the async work that caused it. A job's I/O stages run on the async runtime,
//! hopping between threads, and hand CPU-heavy steps (sealing and opening objects) to the
//! blocking pool; [`measure`] adds up both: the CPU of every poll of the work, and the CPU of
//! every blocking closure it wrapped with [`charged`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cpu_time::ThreadTime;

tokio::task_local! {
    /// Nanoseconds of blocking-pool CPU charged to the measured work.
    static BLOCKING_NANOS: Arc<AtomicU64>;
}

/// What this process has spent so far, on all its threads.
pub fn process_so_far() -> Duration {
    cpu_time::ProcessTime::now().as_duration()
}

/// Runs `work` and returns its output with the CPU it cost: its polls, on whichever thread
/// polled them, plus the blocking closures it ran through [`charged`].
pub async fn measure<F: Future>(work: F) -> (F::Output, Duration) {
    let blocking = Arc::new(AtomicU64::new(0));
    let mut work = std::pin::pin!(BLOCKING_NANOS.scope(Arc::clone(&blocking), work));
    let mut polls = Duration::ZERO;
    let out = std::future::poll_fn(|cx| {
        let before = ThreadTime::now();
        let poll = work.as_mut().poll(cx);
        polls += before.elapsed();
        poll
    })
    .await;
    let blocking = Duration::from_nanos(blocking.load(Ordering::Relaxed));
    (out, polls + blocking)
}

/// `f` for `spawn_blocking`, charging its thread's CPU to the work [`measure`] is timing, if any
/// (build it inside that work: the charge is found from the calling task).
pub fn charged<R>(f: impl FnOnce() -> R) -> impl FnOnce() -> R {
    let to = BLOCKING_NANOS.try_with(Arc::clone).ok();
    move || {
        let before = ThreadTime::now();
        let out = f();
        if let Some(to) = to {
            let nanos = u64::try_from(before.elapsed().as_nanos()).unwrap_or(u64::MAX);
            to.fetch_add(nanos, Ordering::Relaxed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let start = ThreadTime::now();
        while start.elapsed() < d {
            std::hint::black_box(0u64);
        }
    }

    #[tokio::test]
    async fn polls_and_charged_blocking_work_are_counted_and_waits_are_not() {
        let ((), cpu) = measure(async {
            spin(Duration::from_millis(30));
            tokio::time::sleep(Duration::from_millis(100)).await;
            tokio::task::spawn_blocking(charged(|| spin(Duration::from_millis(40))))
                .await
                .ok();
            // Not charged: not built through `charged`.
            tokio::task::spawn_blocking(|| spin(Duration::from_millis(50)))
                .await
                .ok();
        })
        .await;
        assert!(cpu >= Duration::from_millis(70), "{cpu:?}");
        assert!(cpu < Duration::from_millis(110), "{cpu:?}");
    }
}
