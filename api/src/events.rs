//! Job state changes, pushed by Postgres (LISTEN/NOTIFY on the `jobs` trigger's channel) and
//! fanned out in-process to requests waiting on `GET /v1/jobs/{id}?wait=N`.

use std::time::Duration;

use rythmiq_shared::db::JOB_EVENTS_CHANNEL;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use uuid::Uuid;

/// What a waiter hears: a job changed state, or the stream broke and everyone should re-check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    Changed(Uuid),
    Resync,
}

/// One LISTEN connection per API process, shared by all waiters.
#[derive(Clone, Debug)]
pub struct JobEvents {
    tx: broadcast::Sender<JobEvent>,
}

impl JobEvents {
    /// Starts the listener task.
    pub fn spawn(pool: PgPool) -> Self {
        let (tx, _) = broadcast::channel(1024);
        tokio::spawn(listen(pool, tx.clone()));
        Self { tx }
    }

    /// Subscribes for a request that waits at most `wait`; take it before the first read, so a
    /// change in between is not missed.
    pub fn waiter(&self, wait: Duration) -> Waiter {
        Waiter {
            events: self.tx.subscribe(),
            deadline: tokio::time::Instant::now() + wait,
        }
    }
}

/// One request's subscription to the state changes of jobs and batches, until its deadline.
pub struct Waiter {
    events: broadcast::Receiver<JobEvent>,
    deadline: tokio::time::Instant,
}

impl Waiter {
    /// Whether the request has waited as long as it may: answer with what was read.
    pub fn expired(&self) -> bool {
        tokio::time::Instant::now() >= self.deadline
    }

    /// Sleeps until `id` changes state, the stream resyncs (anything may have changed), or the
    /// deadline passes; the caller then reads again.
    pub async fn changed(&mut self, id: Uuid) {
        loop {
            match tokio::time::timeout_at(self.deadline, self.events.recv()).await {
                Err(_) => return,
                Ok(Ok(JobEvent::Changed(changed))) if changed != id => continue,
                Ok(Ok(_) | Err(_)) => return,
            }
        }
    }
}

async fn listen(pool: PgPool, tx: broadcast::Sender<JobEvent>) {
    // Ends with its pool: a closed pool means the process is shutting down.
    while !pool.is_closed() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for job events; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(JOB_EVENTS_CHANNEL).await {
            tracing::warn!(error = %e, "LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything may have changed while we were not listening.
        let _ = tx.send(JobEvent::Resync);
        loop {
            match listener.recv().await {
                Ok(n) => {
                    let id = n
                        .payload()
                        .split(':')
                        .next()
                        .and_then(|s| Uuid::parse_str(s).ok());
                    if let Some(id) = id {
                        let _ = tx.send(JobEvent::Changed(id));
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "job event stream broke; reconnecting");
                    let _ = tx.send(JobEvent::Resync);
                    break;
                }
            }
        }
    }
}
