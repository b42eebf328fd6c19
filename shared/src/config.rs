//! Configuration from environment variables, with every default documented in one place.
//!
//! [`VARIABLES`] is the single table of variables and defaults; the README's configuration table
//! is this list. Each setting is read through [`var`] so a bad value fails at start-up with the
//! variable's name, never later.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, Result};

/// `(name, default, meaning)` for every environment variable Rythmiq reads.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "DATABASE_URL",
        "(required for api/worker/migrate)",
        "Postgres connection URL",
    ),
    ("RYTHMIQ_LISTEN", "0.0.0.0:8080", "API listen address"),
    (
        "RYTHMIQ_STORAGE_DIR",
        "./.rythmiq/objects",
        "root of the local object store",
    ),
    (
        "RYTHMIQ_STORAGE_BACKEND",
        "local",
        "`local` (files under RYTHMIQ_STORAGE_DIR) or `s3` (any S3-compatible store)",
    ),
    (
        "RYTHMIQ_S3_ENDPOINT",
        "(AWS)",
        "S3-compatible endpoint, e.g. https://nyc3.digitaloceanspaces.com",
    ),
    (
        "RYTHMIQ_S3_REGION",
        "us-east-1",
        "S3 region (Spaces: nyc3…)",
    ),
    ("RYTHMIQ_S3_BUCKET", "(required for s3)", "bucket name"),
    (
        "RYTHMIQ_S3_ACCESS_KEY_ID",
        "(required for s3)",
        "access key id",
    ),
    (
        "RYTHMIQ_S3_SECRET_ACCESS_KEY",
        "(required for s3)",
        "secret access key",
    ),
    (
        "RYTHMIQ_S3_ALLOW_HTTP",
        "false",
        "allow a plain http:// endpoint (a loopback MinIO or moto only)",
    ),
    (
        "RYTHMIQ_S3_VIRTUAL_HOSTED_STYLE",
        "false",
        "bucket.endpoint/key requests instead of endpoint/bucket/key",
    ),
    (
        "RYTHMIQ_MASTER_KEY",
        "(required for api/worker; `dev` generates .rythmiq/master-keys)",
        "current master key, `id:base64` of 32 random bytes (`openssl rand -base64 32`)",
    ),
    (
        "RYTHMIQ_MASTER_KEYS_OLD",
        "(none)",
        "retired master keys, `id:base64` separated by commas, kept to read older objects",
    ),
    (
        "RYTHMIQ_JWT_SECRET",
        "(required for api; `dev` generates one)",
        "HS256 secret for bearer tokens",
    ),
    (
        "RYTHMIQ_MAX_UPLOAD_BYTES",
        "20971520",
        "largest accepted upload body (20 MiB); larger gets 413",
    ),
    (
        "RYTHMIQ_MAX_BATCH_FILES",
        "10",
        "most files one POST /v1/batches may carry (each also limited by RYTHMIQ_MAX_UPLOAD_BYTES)",
    ),
    ("RYTHMIQ_DB_POOL_SIZE", "10", "connections per process"),
    (
        "RYTHMIQ_JWKS_URL",
        "(none)",
        "an identity provider's JWKS; its RS256/ES256 tokens are then accepted",
    ),
    (
        "RYTHMIQ_JWT_AUDIENCE",
        "(none)",
        "required `aud` of the provider's tokens (Supabase: authenticated)",
    ),
    (
        "RYTHMIQ_JWT_ISSUER",
        "(none)",
        "required `iss` of the provider's tokens",
    ),
    (
        "RYTHMIQ_RATE_LIMIT_PER_MINUTE",
        "30",
        "jobs one user may create per minute, fleet-wide (429 beyond); 0 = no limit",
    ),
    (
        "RYTHMIQ_STARTING_CREDITS",
        "20",
        "credits a user is given on their first submission; each job costs one",
    ),
    (
        "RYTHMIQ_WORKER_CONCURRENCY",
        "number of cores",
        "jobs one worker process runs at once",
    ),
    (
        "RYTHMIQ_MAX_ATTEMPTS",
        "3",
        "attempts before a job fails for good (crashes count)",
    ),
    ("RYTHMIQ_HEARTBEAT_SECS", "5", "worker heartbeat interval"),
    (
        "RYTHMIQ_ORPHAN_TIMEOUT_SECS",
        "20",
        "silence after which a worker's jobs are re-run elsewhere",
    ),
    (
        "RYTHMIQ_POLL_INTERVAL_MS",
        "1000",
        "idle poll, a fallback to LISTEN/NOTIFY wake-ups",
    ),
    (
        "RYTHMIQ_RETRY_BASE_SECS",
        "2",
        "first retry delay; doubles per attempt",
    ),
    ("RYTHMIQ_RETRY_MAX_SECS", "300", "longest retry delay"),
    (
        "RYTHMIQ_SHUTDOWN_TIMEOUT_SECS",
        "30",
        "time in-flight jobs get to finish on SIGTERM",
    ),
    (
        "RYTHMIQ_JOB_TIMEOUT_SECS",
        "300",
        "longest one attempt may run before it is failed as retryable",
    ),
    (
        "RYTHMIQ_FETCH_TIMEOUT_SECS",
        "30",
        "object-store read timeout (FETCH_TIMEOUT)",
    ),
    (
        "RYTHMIQ_UPLOAD_TIMEOUT_SECS",
        "60",
        "object-store write timeout (UPLOAD_FAILED)",
    ),
    (
        "RYTHMIQ_MAINTENANCE_SECS",
        "300",
        "how often the fleet refreshes rollups and applies retention",
    ),
    (
        "RYTHMIQ_RAW_RETENTION_HOURS",
        "24",
        "raw uploads are deleted this long after their job finished",
    ),
    (
        "RYTHMIQ_OUTPUT_RETENTION_DAYS",
        "7",
        "outputs (and a document's OCR text) are deleted this long after completion",
    ),
    (
        "RYTHMIQ_OCR_TIMEOUT_SECS",
        "120",
        "longest OCR may take in one job (then OCR_TIMEOUT, retried)",
    ),
    (
        "RYTHMIQ_OCR_THREADS",
        "cores / concurrency",
        "inference threads per OCR run (concurrency × threads ≈ cores)",
    ),
    (
        "RYTHMIQ_MODELS_DIR",
        "./models",
        "where the OCR models are (scripts/fetch-models.sh puts them there)",
    ),
    (
        "RYTHMIQ_RETENTION_DAYS",
        "90",
        "age after which cpu_metrics and error_events rows are removed",
    ),
    (
        "RYTHMIQ_METRICS_LISTEN",
        "0.0.0.0:9100",
        "where `rythmiq worker` serves /metrics (the API serves its own)",
    ),
    (
        "RYTHMIQ_LOG_FORMAT",
        "json for api/worker/migrate, text otherwise",
        "`json` or `text` log lines",
    ),
    (
        "RUST_LOG",
        "info,sqlx=warn (warn for one-shot commands)",
        "log filter",
    ),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "(unset: no export)",
        "OTLP/HTTP trace export; the standard OTEL_* variables apply",
    ),
];

/// Read and parse an environment variable, falling back to `default` when it is unset or empty.
pub fn var<T: FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|e| Error::Config(format!("{name}={v:?}: {e}"))),
        _ => Ok(default),
    }
}

/// An environment variable that must be set.
pub fn required(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(Error::Config(format!("{name} must be set"))),
    }
}

/// An environment variable that may be set (empty counts as unset).
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Settings of the object store.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub root: PathBuf,
    pub fetch_timeout: Duration,
    pub upload_timeout: Duration,
}

impl StorageSettings {
    pub fn from_env() -> Result<Self> {
        Ok(Self {
            root: var("RYTHMIQ_STORAGE_DIR", PathBuf::from("./.rythmiq/objects"))?,
            fetch_timeout: Duration::from_secs(var("RYTHMIQ_FETCH_TIMEOUT_SECS", 30)?),
            upload_timeout: Duration::from_secs(var("RYTHMIQ_UPLOAD_TIMEOUT_SECS", 60)?),
        })
    }
}

/// Settings of the HTTP API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub listen: String,
    pub jwt_secret: String,
    pub max_upload_bytes: usize,
    /// Most files one batch may carry (at least 1).
    pub max_batch_files: usize,
    pub max_attempts: i32,
    /// Jobs one user may create per minute, fleet-wide; 0 turns the limit off.
    pub rate_limit_per_minute: u32,
    /// Credits a user is given the first time they submit (the free allowance).
    pub starting_credits: i32,
    /// An identity provider whose RS256/ES256 tokens are accepted besides our HS256 ones.
    pub provider: crate::auth::ProviderSettings,
}

impl ApiSettings {
    /// Reads the API's settings; `jwt_secret` may be supplied by the caller (`rythmiq dev`).
    pub fn from_env(jwt_secret: Option<String>) -> Result<Self> {
        let jwt_secret = match jwt_secret {
            Some(s) => s,
            None => required("RYTHMIQ_JWT_SECRET")?,
        };
        let max_batch_files: usize = var("RYTHMIQ_MAX_BATCH_FILES", 10)?;
        if max_batch_files == 0 {
            return Err(Error::Config(
                "RYTHMIQ_MAX_BATCH_FILES must be at least 1".into(),
            ));
        }
        Ok(Self {
            listen: var("RYTHMIQ_LISTEN", "0.0.0.0:8080".to_string())?,
            jwt_secret,
            max_upload_bytes: var("RYTHMIQ_MAX_UPLOAD_BYTES", 20 * 1024 * 1024)?,
            max_batch_files,
            max_attempts: var("RYTHMIQ_MAX_ATTEMPTS", 3)?,
            rate_limit_per_minute: var("RYTHMIQ_RATE_LIMIT_PER_MINUTE", 30)?,
            starting_credits: var("RYTHMIQ_STARTING_CREDITS", 20)?,
            provider: crate::auth::ProviderSettings {
                jwks_url: optional("RYTHMIQ_JWKS_URL"),
                audience: optional("RYTHMIQ_JWT_AUDIENCE"),
                issuer: optional("RYTHMIQ_JWT_ISSUER"),
            },
        })
    }
}

/// Settings of a worker process.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub heartbeat: Duration,
    pub orphan_timeout: Duration,
    pub poll_interval: Duration,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub shutdown_timeout: Duration,
    pub job_timeout: Duration,
    pub maintenance_interval: Duration,
    pub retention_days: u32,
    /// Raw uploads are deleted this long after their job finished.
    pub raw_retention: Duration,
    /// Outputs (and a document's OCR text) are deleted this long after their job completed.
    pub output_retention: Duration,
    /// Longest OCR may take in one job (`OCR_TIMEOUT`, retried).
    pub ocr_timeout: Duration,
    /// Inference threads per OCR run; 0 sizes it so that concurrency × threads ≈ cores.
    pub ocr_threads: usize,
}

impl WorkerSettings {
    pub fn from_env() -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let concurrency: usize = var("RYTHMIQ_WORKER_CONCURRENCY", cores)?;
        if concurrency == 0 {
            return Err(Error::Config(
                "RYTHMIQ_WORKER_CONCURRENCY must be at least 1".into(),
            ));
        }
        let heartbeat = Duration::from_secs(var("RYTHMIQ_HEARTBEAT_SECS", 5)?);
        let orphan_timeout = Duration::from_secs(var("RYTHMIQ_ORPHAN_TIMEOUT_SECS", 20)?);
        if orphan_timeout <= heartbeat {
            return Err(Error::Config(
                "RYTHMIQ_ORPHAN_TIMEOUT_SECS must be longer than RYTHMIQ_HEARTBEAT_SECS".into(),
            ));
        }
        Ok(Self {
            concurrency,
            heartbeat,
            orphan_timeout,
            poll_interval: Duration::from_millis(var("RYTHMIQ_POLL_INTERVAL_MS", 1000)?),
            retry_base: Duration::from_secs(var("RYTHMIQ_RETRY_BASE_SECS", 2)?),
            retry_max: Duration::from_secs(var("RYTHMIQ_RETRY_MAX_SECS", 300)?),
            shutdown_timeout: Duration::from_secs(var("RYTHMIQ_SHUTDOWN_TIMEOUT_SECS", 30)?),
            job_timeout: Duration::from_secs(var("RYTHMIQ_JOB_TIMEOUT_SECS", 300)?),
            maintenance_interval: Duration::from_secs(var("RYTHMIQ_MAINTENANCE_SECS", 300)?),
            retention_days: var("RYTHMIQ_RETENTION_DAYS", 90)?,
            raw_retention: Duration::from_secs(3600 * var("RYTHMIQ_RAW_RETENTION_HOURS", 24)?),
            output_retention: Duration::from_secs(
                86_400 * var("RYTHMIQ_OUTPUT_RETENTION_DAYS", 7)?,
            ),
            ocr_timeout: Duration::from_secs(var("RYTHMIQ_OCR_TIMEOUT_SECS", 120)?),
            ocr_threads: var("RYTHMIQ_OCR_THREADS", 0)?,
        })
    }

    /// OCR inference threads for a process running `runtimes` workers of this concurrency:
    /// the configured number, or cores shared out so that jobs × threads ≈ cores.
    pub fn ocr_threads_for(&self, runtimes: usize) -> usize {
        if self.ocr_threads > 0 {
            return self.ocr_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / (self.concurrency * runtimes.max(1)).max(1)).max(1)
    }

    /// Delay before retry number `attempt` (1-based): exponential, capped.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        self.retry_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.retry_max)
    }
}

/// Pool size per process.
pub fn pool_size() -> Result<u32> {
    var("RYTHMIQ_DB_POOL_SIZE", 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut s = WorkerSettings {
            concurrency: 1,
            heartbeat: Duration::from_secs(5),
            orphan_timeout: Duration::from_secs(20),
            poll_interval: Duration::from_secs(1),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            job_timeout: Duration::from_secs(300),
            maintenance_interval: Duration::from_secs(300),
            retention_days: 90,
            raw_retention: Duration::from_secs(86_400),
            output_retention: Duration::from_secs(7 * 86_400),
            ocr_timeout: Duration::from_secs(120),
            ocr_threads: 0,
        };
        assert_eq!(s.backoff(1), Duration::from_secs(2));
        assert_eq!(s.backoff(2), Duration::from_secs(4));
        assert_eq!(s.backoff(3), Duration::from_secs(8));
        assert_eq!(s.backoff(4), Duration::from_secs(10));
        s.retry_max = Duration::from_secs(10_000);
        assert_eq!(s.backoff(100), Duration::from_secs(10_000));

        // OCR threads share the cores among the jobs that run at once.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(s.ocr_threads_for(1), cores);
        s.concurrency = cores * 4;
        assert_eq!(s.ocr_threads_for(1), 1);
        s.ocr_threads = 3;
        assert_eq!(s.ocr_threads_for(2), 3);
    }
}
