//! The worker runtime: registration, heartbeat, orphan reaping, LISTEN/NOTIFY wake-ups and the
//! claim loops ("slots"), one per unit of concurrency. The SQL is split by concern: [`claim`]
//! (claim and start), [`heartbeat`], [`reaper`], [`outcome`] (complete, fail, release), and
//! [`apalis`], every statement on apalis-postgres' own tables.
//!
//! Each slot claims one task at a time, so a process never holds more tasks than it can run
//! (no prefetch beyond concurrency). Every loop survives database errors: it logs, waits and
//! tries again, so a database restart heals without restarting the worker. Recording an
//! outcome is retried only while the error is transient ([`rythmiq_shared::db::is_transient`]).

pub mod apalis;
pub mod claim;
pub mod health;
pub mod heartbeat;
pub mod outcome;
pub mod reaper;

use std::sync::Arc;
use std::time::Duration;

use apalis::WorkerContext;
use rythmiq_shared::config::WorkerSettings;
use rythmiq_shared::db::{TASK_INSERT_CHANNEL, is_transient};
use rythmiq_shared::error::Chain;
use rythmiq_shared::metrics as m;
use rythmiq_shared::telemetry::{trace, user_id_hash};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch;
use crate::error::JobError;
use crate::job::Pipeline;
use crate::maintenance;
use claim::Started;

/// A worker process's shared state.
#[derive(Clone)]
pub struct Worker {
    pub pool: PgPool,
    pub pipeline: Pipeline,
    pub settings: WorkerSettings,
    pub name: String,
    /// What the probes on the metrics port read.
    pub health: health::Health,
    /// Start-up CPU not yet charged to a job.
    startup: StartupCpu,
    wake: Arc<Notify>,
    warm: Arc<std::sync::atomic::AtomicBool>,
}

/// CPU a process spent before its first job (start-up, loading the OCR models), charged once,
/// to the first job that completes, so the `cpu_metrics` rows add up to what the process spent.
/// Shared by the workers of one process.
#[derive(Clone, Debug, Default)]
pub struct StartupCpu(Arc<std::sync::Mutex<Option<Duration>>>);

impl StartupCpu {
    pub fn new(cpu: Duration) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(cpu))))
    }

    /// Everything this process has spent so far, on all its threads: call once start-up is
    /// done (models loaded), before the first job.
    pub fn so_far() -> Self {
        Self::new(rythmiq_shared::cpu::process_so_far())
    }

    /// The charge, the first time; zero after.
    fn take(&self) -> Duration {
        self.0
            .lock()
            .map(|mut c| c.take().unwrap_or_default())
            .unwrap_or_default()
    }
}

/// The job's metrics; `startup` is the process's start-up CPU when this job carries it (see
/// [`StartupCpu`]), so the CPU histogram's total agrees with the `cpu_metrics` rows.
fn record_success_metrics(out: &crate::job::JobOutput, portal: String, startup: f64) {
    let p = &out.processed;
    metrics::counter!(m::JOBS_TOTAL, "status" => "completed", "path" => p.path.as_str(),
                      "portal" => portal)
    .increment(1);
    let mut total = 0.0;
    for s in &p.stages {
        total += s.cpu_seconds;
        metrics::histogram!(m::JOB_CPU_SECONDS, "stage" => s.name).record(s.cpu_seconds);
    }
    if startup > 0.0 {
        metrics::histogram!(m::JOB_CPU_SECONDS, "stage" => "startup").record(startup);
        total += startup;
    }
    metrics::histogram!(m::JOB_CPU_SECONDS, "stage" => "total").record(total);
    metrics::histogram!(m::QUALITY_SCORE).record(f64::from(p.quality.score));
    if let Some(ocr) = &p.ocr {
        metrics::histogram!(m::OCR_CONFIDENCE).record(f64::from(ocr.confidence));
        if ocr.rolled_back {
            metrics::counter!(m::OCR_ROLLBACKS_TOTAL).increment(1);
        }
    }
}

/// A unique name: host (`/etc/hostname`, else `hostname` from the settings), process id and a
/// random suffix (several processes may share a pid namespace or a host name in containers).
pub fn unique_name(hostname: Option<&str>) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| hostname.map(str::to_owned))
        .unwrap_or_else(|| "worker".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

impl Worker {
    pub fn new(pool: PgPool, pipeline: Pipeline, settings: WorkerSettings) -> Self {
        Self {
            pool,
            pipeline,
            name: unique_name(settings.hostname.as_deref()),
            settings,
            health: health::Health::default(),
            startup: StartupCpu::default(),
            wake: Arc::new(Notify::new()),
            warm: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Charges `startup` to the first job that completes (see [`StartupCpu`]).
    pub fn with_startup_cpu(mut self, startup: StartupCpu) -> Self {
        self.startup = startup;
        self
    }

    /// Runs until `shutdown` fires, then stops claiming, lets in-flight jobs finish within the
    /// shutdown timeout and hands back whatever is still running.
    ///
    /// Fails at start, with [`JobError::QueueSchema`], when the database's apalis-postgres tables
    /// lack a column the queue's statements use ([`apalis::check_schema`]).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), JobError> {
        // Retry the start-up check and registration: a worker started before its database is
        // up waits for it. Any database error is retried here (a database that is still being
        // set up may refuse in any way); a schema that does not match is not.
        let mut delay = Duration::from_millis(200);
        loop {
            let started = match apalis::check_schema(&self.pool).await {
                Ok(()) => heartbeat::register(&self.pool, &self.name)
                    .await
                    .map_err(JobError::from),
                Err(e) => Err(e),
            };
            match started {
                Ok(()) => break,
                Err(e @ JobError::QueueSchema { .. }) => {
                    tracing::error!(error = %e, "the queue schema does not match; stopping");
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "cannot register worker yet; retrying")
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        tracing::info!(worker = %self.name, concurrency = self.settings.concurrency, "worker started");
        self.health.beat();
        self.health.set_ready(true);
        let (health, stopping) = (self.health.clone(), shutdown.clone());
        tokio::spawn(async move {
            stopping.cancelled().await;
            health.set_ready(false);
        });

        let background = CancellationToken::new();
        let heartbeat = tokio::spawn(self.clone().heartbeat_loop(background.clone()));
        let listener = tokio::spawn(self.clone().listen_loop(background.clone()));
        let maintenance = tokio::spawn(maintenance::run(
            self.pool.clone(),
            self.pipeline.storage.clone(),
            self.settings.clone(),
            background.clone(),
        ));
        let mut slots = tokio::task::JoinSet::new();
        for slot in 0..self.settings.concurrency {
            // Each slot runs its jobs' inference on an OCR thread pool of its own, so jobs do
            // not queue behind each other's model runs and each job's CPU is charged to it.
            let mut own = self.clone();
            own.pipeline.ocr = own.pipeline.ocr.with_own_pool();
            slots.spawn(own.slot_loop(slot, shutdown.clone()));
        }
        while let Some(res) = slots.join_next().await {
            if let Err(e) = res {
                tracing::error!(error = %e, "a worker slot ended abnormally");
            }
        }
        // Heartbeats go on until every slot has finished or released its job.
        background.cancel();
        let _ = heartbeat.await;
        let _ = listener.await;
        let _ = maintenance.await;
        tracing::info!(worker = %self.name, "worker stopped");
        Ok(())
    }

    async fn heartbeat_loop(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.heartbeat);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = heartbeat::heartbeat(&self.pool, &self.name).await {
                tracing::warn!(error = %e, "heartbeat failed; will retry");
                continue;
            }
            self.health.beat();
            let s = &self.settings;
            match reaper::reap_orphans(&self.pool, s.orphan_timeout, s.retry_base, s.retry_max)
                .await
            {
                Ok(reaped) if !reaped.is_empty() => {
                    self.wake.notify_waiters();
                    let failed: Vec<uuid::Uuid> = reaped
                        .into_iter()
                        .filter(|(_, state)| state == "failed")
                        .map(|(job, _)| job)
                        .collect();
                    if !failed.is_empty() {
                        // Off the heartbeat's task: packaging may take longer than a beat.
                        let worker = self.clone();
                        tokio::spawn(async move {
                            for job in failed {
                                worker.package_batch_of(job).await;
                            }
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "orphan reaping failed; will retry"),
            }
        }
    }

    /// Packages the batch of a job that has just reached its final state, when it was the
    /// batch's last unfinished job.
    async fn package_batch_of(&self, job: uuid::Uuid) {
        batch::after_job(&self.pool, &self.pipeline.storage, &self.settings, job).await;
    }

    /// Wakes idle slots as soon as apalis-postgres' insert trigger announces a task.
    async fn listen_loop(self, stop: CancellationToken) {
        loop {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN yet; relying on polling");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            };
            if let Err(e) = listener.listen(TASK_INSERT_CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                continue;
            }
            // A task inserted before the LISTEN took effect was announced to no one: an idle
            // slot looks again now instead of at its next poll.
            self.wake.notify_waiters();
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    msg = listener.recv() => match msg {
                        Ok(_) => self.wake.notify_waiters(),
                        Err(e) => {
                            tracing::warn!(error = %e, "notification stream broke; reconnecting");
                            self.wake.notify_waiters();
                            break;
                        }
                    }
                }
            }
        }
    }

    async fn slot_loop(self, slot: usize, shutdown: CancellationToken) {
        let ctx = WorkerContext::new(&self.name);
        let mut error_delay = Duration::from_millis(200);
        // The jobs this slot completed, announced with its next claim (one statement for both).
        let mut announce: Vec<outcome::Announcement> = Vec::new();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // Registered before claiming so a notification during the claim is not missed.
            let woken = self.wake.notified();
            match claim::claim(&self.pool, &ctx, &announce).await {
                Ok(Some(started)) => {
                    announce.clear();
                    error_delay = Duration::from_millis(200);
                    announce.extend(self.run_job(started, &shutdown).await);
                }
                Ok(None) => {
                    announce.clear();
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = woken => {}
                        () = tokio::time::sleep(self.settings.poll_interval) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(slot, error = %Chain(&e), "claim failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(error_delay) => {}
                    }
                    error_delay = (error_delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Stopping: what the next claim would have announced goes out on its own.
        outcome::announce(&self.pool, &announce).await;
    }

    /// Runs one started job to an outcome the database records, or hands it back when a
    /// shutdown outlasts the grace period. Returns the completed job's announcement, for the
    /// slot's next claim to send.
    async fn run_job(
        &self,
        started: Started,
        shutdown: &CancellationToken,
    ) -> Option<outcome::Announcement> {
        let span = tracing::info_span!("job",
            otel.name = "job",
            service = "worker",
            job_id = %started.input.job_id,
            correlation_id = %started.correlation_id,
            user_id_hash = %user_id_hash(&started.input.user_id.to_string()),
            attempt = started.attempt);
        // The first attempt is part of the request's trace; a retry is its own trace, linked
        // to the enqueue (it may run hours later, for a reason the request never saw).
        if started.attempt <= 1 {
            trace::continue_trace(&span, started.traceparent.as_deref());
        } else {
            trace::link_trace(&span, started.traceparent.as_deref());
        }
        self.run_job_in_span(started, shutdown)
            .instrument(span)
            .await
    }

    async fn run_job_in_span(
        &self,
        started: Started,
        shutdown: &CancellationToken,
    ) -> Option<outcome::Announcement> {
        let began = std::time::Instant::now();
        // The first job of a process pays for cold caches (and, with OCR, model loading).
        let cold = !self.warm.swap(true, std::sync::atomic::Ordering::Relaxed);
        let temperature = if cold { "cold" } else { "warm" };
        tracing::info!(portal = %started.input.rule.slug, execution_temperature = temperature,
                       "job processing started");
        if cold {
            tracing::warn!("cold start");
        }
        let in_progress = metrics::gauge!(m::JOBS_IN_PROGRESS);
        in_progress.increment(1.0);

        let work =
            tokio::time::timeout(self.settings.job_timeout, self.pipeline.run(&started.input));
        let grace = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.settings.shutdown_timeout).await;
        };
        let result = tokio::select! {
            r = work => r.unwrap_or(Err(JobError::Timeout)),
            () = grace => {
                tracing::warn!("shutdown grace period over; handing the job back");
                self.retry_db("release", || outcome::release(&self.pool, &self.name, &started)).await;
                in_progress.decrement(1.0);
                return None;
            }
        };
        in_progress.decrement(1.0);
        let wall = began.elapsed().as_secs_f64();
        metrics::histogram!(m::JOB_LATENCY_SECONDS).record(wall);
        if cold {
            metrics::counter!(m::COLD_STARTS_TOTAL).increment(1);
        }
        let portal = started.input.rule.slug.clone();

        match result {
            Ok(out) => {
                let cost = outcome::AttemptCost {
                    cold,
                    wall_seconds: wall,
                    // The first job to complete carries it (a failed attempt writes no row).
                    startup_cpu_seconds: self.startup.take().as_secs_f64(),
                };
                record_success_metrics(&out, portal, cost.startup_cpu_seconds);
                let done = self
                    .retry_db("complete", || {
                        outcome::complete(&self.pool, &self.name, &started, &out, &cost)
                    })
                    .await;
                let ok = done.as_ref().map(Option::is_some);
                if ok == Some(false) {
                    tracing::warn!("job was taken back while running; its result is dropped");
                } else {
                    let p = &out.processed;
                    tracing::info!(
                        cpu_seconds = p.stages.iter().map(|s| s.cpu_seconds).sum::<f64>(),
                        latency_ms = wall * 1000.0,
                        processing_path = p.path.as_str(),
                        quality_score = p.quality.score,
                        ocr_confidence = p.ocr.as_ref().map(|r| r.confidence),
                        bytes = out.bytes,
                        "job completed successfully"
                    );
                }
                if ok == Some(true) {
                    self.package_batch_of(started.input.job_id).await;
                }
                done.flatten()
            }
            Err(err) => {
                let code = err.code();
                let retryable = err.retryable();
                let message = err.message();
                let backoff = self.settings.backoff(started.attempt);
                let state = self
                    .retry_db("fail", || {
                        outcome::fail(
                            &self.pool, &self.name, &started, code, retryable, &message, backoff,
                        )
                    })
                    .await
                    .flatten();
                metrics::counter!(m::ERRORS_TOTAL, "code" => code.as_str(), "stage" => code.stage())
                    .increment(1);
                let status = if state == Some("pending") {
                    "retried"
                } else {
                    "failed"
                };
                metrics::counter!(m::JOBS_TOTAL, "status" => status, "path" => "unknown",
                                  "portal" => portal)
                .increment(1);
                if status == "retried" {
                    tracing::warn!(error_code = %code, error_stage = code.stage(), latency_ms = wall * 1000.0,
                                   "job attempt failed; it will be retried");
                } else {
                    tracing::error!(error_code = %code, error_stage = code.stage(), latency_ms = wall * 1000.0,
                                    "job failed");
                }
                if state == Some("failed") {
                    self.package_batch_of(started.input.job_id).await;
                }
                // The jobs trigger announces a failure itself.
                None
            }
        }
    }

    /// Recording an outcome must not be lost to a database blip: retry a transient error until
    /// it lands or the process is going away (then the orphan reaper of another worker takes
    /// over). An error that would repeat on every try is logged and given up at once, as when
    /// the retries run out: the task stays with this worker until it stops, then the reaper of
    /// another worker takes it back.
    async fn retry_db<T, F, Fut>(&self, what: &str, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut delay = Duration::from_millis(200);
        for _ in 0..60 {
            match op().await {
                Ok(v) => return Some(v),
                Err(e) if !is_transient(&e) => {
                    tracing::error!(error = %Chain(&e), what, "recording the job outcome failed");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), what, "recording the job outcome failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        None
    }
}
