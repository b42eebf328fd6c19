//! The decode's wall-clock deadline: a thread of its own, abandoned (never killed) when late.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;

use bytes::Bytes;

use super::{DecodeError, DecodeLimits, Decoded, TargetSize, decode_checked};

/// Decode threads that passed their deadline and are still running. Their memory is only
/// returned when they finish, so we stop starting new decodes while too many linger.
pub(super) static OVERDUE_DECODES: AtomicUsize = AtomicUsize::new(0);

/// Most overdue decodes tolerated at once (each may hold up to `max_alloc_bytes`).
pub(super) const MAX_OVERDUE_DECODES: usize = 2;

pub(super) const RUNNING: u8 = 0;

pub(super) const ABANDONED: u8 = 1;

pub(super) const FINISHED: u8 = 2;

/// Run the decode on a dedicated thread and wait at most `limits.max_decode_time` for it.
///
/// None of the decoders (image-rs, zune-jpeg, libheif 1.15) can be cancelled, so on timeout the
/// thread is left to finish on its own and its result is dropped; the limits on pixels and
/// memory bound what it can still consume.
pub(super) fn run_with_deadline(
    bytes: Bytes,
    limits: DecodeLimits,
    target: Option<TargetSize>,
) -> Result<Decoded, DecodeError> {
    if OVERDUE_DECODES.load(Ordering::SeqCst) >= MAX_OVERDUE_DECODES {
        return Err(DecodeError::Unavailable(
            "too many earlier decodes are still running past their time limit".to_owned(),
        ));
    }
    let deadline = limits.max_decode_time;
    let (tx, rx) = mpsc::sync_channel(1);
    let state = Arc::new(AtomicU8::new(RUNNING));
    let thread_state = Arc::clone(&state);
    let spawned = thread::Builder::new()
        .name("rythmiq-decode".to_owned())
        // Decoders recurse little, but 8 MiB (the main thread's default) costs only address space.
        .stack_size(8 * 1024 * 1024)
        .spawn(move || {
            // Third-party decoders have panicked on hostile input before; a bad upload must fail
            // the job, not take the worker down with it.
            let cpu = cpu_time::ThreadTime::now();
            let result =
                panic::catch_unwind(AssertUnwindSafe(|| decode_checked(&bytes, &limits, target)))
                    .unwrap_or_else(|_| {
                        Err(DecodeError::Corrupt(
                            "the decoder rejected malformed data".to_owned(),
                        ))
                    })
                    .map(|(image, warnings)| Decoded {
                        image,
                        cpu: cpu.elapsed(),
                        warnings,
                    });
            drop(bytes);
            // The receiver is gone after a timeout; the image is then simply dropped.
            if tx.send(result).is_err() {
                tracing::debug!("dropping the result of a decode that passed its deadline");
            }
            if thread_state.swap(FINISHED, Ordering::SeqCst) == ABANDONED {
                OVERDUE_DECODES.fetch_sub(1, Ordering::SeqCst);
            }
        });
    if let Err(e) = spawned {
        return Err(DecodeError::Unavailable(format!(
            "could not start a decode thread: {e}"
        )));
    }
    match rx.recv_timeout(deadline) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // Count first, so the thread's decrement can never run before this increment.
            OVERDUE_DECODES.fetch_add(1, Ordering::SeqCst);
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // It finished just now; take its result after all.
                OVERDUE_DECODES.fetch_sub(1, Ordering::SeqCst);
                return rx
                    .try_recv()
                    .unwrap_or(Err(DecodeError::Timeout { limit: deadline }));
            }
            tracing::warn!(
                limit_s = deadline.as_secs_f64(),
                overdue = OVERDUE_DECODES.load(Ordering::SeqCst),
                "decode passed its deadline; abandoning its thread"
            );
            Err(DecodeError::Timeout { limit: deadline })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(DecodeError::Corrupt(
            "the decoder stopped unexpectedly".to_owned(),
        )),
    }
}
