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

/// What process `pid` has spent so far, on all its threads, user and system, as `/proc` reports
/// it (Linux): how an operator measures a process, from outside it.
pub fn of_process(pid: u32) -> std::io::Result<Duration> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold anything.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| invalid("no command name in /proc/PID/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = fields
        .get(11..13)
        .ok_or_else(|| invalid("too few fields in /proc/PID/stat"))?
        .iter()
        .map(|f| {
            f.parse::<u64>()
                .map_err(|_| invalid("a CPU time is not a number"))
        })
        .sum::<std::io::Result<u64>>()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()?;
    let hz: u64 = String::from_utf8_lossy(&hz.stdout)
        .trim()
        .parse()
        .map_err(|_| invalid("getconf CLK_TCK did not print a number"))?;
    if hz == 0 {
        return Err(invalid("getconf CLK_TCK printed 0"));
    }
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
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

    #[test]
    fn this_process_reads_as_it_does_from_inside() -> std::io::Result<()> {
        spin(Duration::from_millis(50));
        let outside = of_process(std::process::id())?;
        let inside = process_so_far();
        // /proc counts in clock ticks (10 ms).
        assert!(
            outside <= inside + Duration::from_millis(20),
            "{outside:?} {inside:?}"
        );
        assert!(
            outside + Duration::from_millis(30) >= inside,
            "{outside:?} {inside:?}"
        );
        assert!(of_process(u32::MAX).is_err());
        Ok(())
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
