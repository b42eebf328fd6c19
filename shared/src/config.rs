//! Configuration: every setting is declared once, as a typed `clap` argument with its environment
//! variable (`env = "…"`) and its default beside it. The binary composes these pieces with
//! `#[command(flatten)]` into one struct per role (`rythmiq api`, `worker`, `migrate`, `dev`…),
//! so `rythmiq ROLE --help` lists every variable the role reads, and a bad value fails at start-up
//! with the variable's name, never later. The README's configuration table is checked against
//! these definitions by a test in the binary.
//!
//! Nothing else in Rythmiq reads the environment, with two exceptions: the standard `OTEL_*`
//! variables, which the OpenTelemetry SDK reads itself ([`crate::telemetry::trace`]), and `PATH`,
//! where the embedded Postgres looks for the server binaries.
//!
//! The `*Args` structs hold what was given; `settings`-style methods check the values that
//! depend on each other and turn them into the runtime settings ([`StorageSettings`],
//! [`ApiSettings`], [`WorkerSettings`]) the services take.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::PossibleValue;
use clap::{ArgAction, Args, ValueEnum};
use zeroize::Zeroizing;

use crate::crypto::{CryptoError, KeyRing, MASTER_KEY_VAR, OLD_MASTER_KEYS_VAR};
use crate::storage::{Backend, S3Config};
use crate::telemetry::{CLI_LOG_FILTER, LogFormat, LogSettings, SERVICE_LOG_FILTER};
use crate::{Error, Result};

/// The cores this process may use: the default worker concurrency.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// A value given as text, trimmed, with empty meaning "not set" (as a blank variable does).
fn given(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// `name must be set` unless `value` holds something.
fn must_be_set(value: Option<&str>, name: &str) -> Result<String> {
    given(value).ok_or_else(|| Error::Config(format!("{name} must be set")))
}

/// The connection pool size, for every role that talks to Postgres.
#[derive(Args, Clone)]
pub struct PoolArgs {
    /// Connections per process.
    #[arg(
        long,
        env = "RYTHMIQ_DB_POOL_SIZE",
        value_name = "N",
        default_value_t = 10
    )]
    pub db_pool_size: u32,
}

/// The database of the production roles.
#[derive(Args, Clone)]
pub struct DatabaseArgs {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: String,
    #[command(flatten)]
    pub pool: PoolArgs,
}

/// Which object store holds the files.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Files under `RYTHMIQ_STORAGE_DIR`.
    Local,
    /// Any S3-compatible store (`RYTHMIQ_S3_*`).
    S3,
}

/// An S3-compatible bucket (used when `RYTHMIQ_STORAGE_BACKEND=s3`). Ambient `AWS_*` variables
/// are ignored, so these alone decide where student documents go.
#[derive(Args, Clone)]
pub struct S3Args {
    /// S3-compatible endpoint, e.g. https://nyc3.digitaloceanspaces.com [default: AWS].
    #[arg(long, env = "RYTHMIQ_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region.
    #[arg(long, env = "RYTHMIQ_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Bucket (required for `s3`).
    #[arg(long, env = "RYTHMIQ_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// Access key id (required for `s3`).
    #[arg(long, env = "RYTHMIQ_S3_ACCESS_KEY_ID", hide_env_values = true)]
    pub s3_access_key_id: Option<String>,
    /// Secret access key (required for `s3`).
    #[arg(long, env = "RYTHMIQ_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Allow a plain http:// endpoint (a loopback MinIO or moto).
    #[arg(long, env = "RYTHMIQ_S3_ALLOW_HTTP", value_name = "BOOL", action = ArgAction::Set, default_value_t = false)]
    pub s3_allow_http: bool,
    /// `bucket.endpoint/key` instead of `endpoint/bucket/key`.
    #[arg(long, env = "RYTHMIQ_S3_VIRTUAL_HOSTED_STYLE", value_name = "BOOL", action = ArgAction::Set, default_value_t = false)]
    pub s3_virtual_hosted_style: bool,
}

impl S3Args {
    /// The bucket's configuration; bucket and credentials must be set.
    pub fn config(&self) -> Result<S3Config> {
        Ok(S3Config {
            endpoint: given(self.s3_endpoint.as_deref()),
            region: given(Some(self.s3_region.as_str())).unwrap_or_else(|| "us-east-1".to_owned()),
            bucket: must_be_set(self.s3_bucket.as_deref(), "RYTHMIQ_S3_BUCKET")?,
            access_key_id: must_be_set(
                self.s3_access_key_id.as_deref(),
                "RYTHMIQ_S3_ACCESS_KEY_ID",
            )?,
            secret_access_key: Zeroizing::new(must_be_set(
                self.s3_secret_access_key.as_deref(),
                "RYTHMIQ_S3_SECRET_ACCESS_KEY",
            )?),
            allow_http: self.s3_allow_http,
            virtual_hosted_style: self.s3_virtual_hosted_style,
        })
    }
}

/// The object store, except where a local one keeps its files (`rythmiq dev` puts them in its
/// data dir).
#[derive(Args, Clone)]
pub struct ObjectStoreArgs {
    /// Where objects live: `local` (files under RYTHMIQ_STORAGE_DIR) or `s3`.
    #[arg(long, env = "RYTHMIQ_STORAGE_BACKEND", value_enum, ignore_case = true, default_value_t = BackendKind::Local)]
    pub storage_backend: BackendKind,
    /// Object-store read timeout in seconds (`FETCH_TIMEOUT`).
    #[arg(
        long,
        env = "RYTHMIQ_FETCH_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub fetch_timeout_secs: u64,
    /// Object-store write timeout in seconds (`UPLOAD_FAILED`).
    #[arg(
        long,
        env = "RYTHMIQ_UPLOAD_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 60
    )]
    pub upload_timeout_secs: u64,
    #[command(flatten)]
    pub s3: S3Args,
}

impl ObjectStoreArgs {
    /// The store's settings, with a local store rooted at `root`.
    pub fn settings(&self, root: PathBuf) -> StorageSettings {
        StorageSettings {
            root,
            fetch_timeout: Duration::from_secs(self.fetch_timeout_secs),
            upload_timeout: Duration::from_secs(self.upload_timeout_secs),
        }
    }

    /// The backend; `s3` needs its bucket and credentials.
    pub fn backend(&self) -> Result<Backend> {
        Ok(match self.storage_backend {
            BackendKind::Local => Backend::Local,
            BackendKind::S3 => Backend::S3(self.s3.config()?),
        })
    }
}

/// The object store of the production roles.
#[derive(Args, Clone)]
pub struct StorageArgs {
    /// Root of the local object store.
    #[arg(
        long,
        env = "RYTHMIQ_STORAGE_DIR",
        value_name = "DIR",
        default_value = "./.rythmiq/objects"
    )]
    pub storage_dir: PathBuf,
    #[command(flatten)]
    pub store: ObjectStoreArgs,
}

impl StorageArgs {
    /// The store's settings.
    pub fn settings(&self) -> StorageSettings {
        self.store.settings(self.storage_dir.clone())
    }
}

/// The master keys every stored object is sealed under ([`crate::crypto`]).
#[derive(Args, Clone)]
pub struct MasterKeyArgs {
    /// Current master key, `id:base64` of 32 random bytes (`openssl rand -base64 32`).
    #[arg(long, env = MASTER_KEY_VAR, value_name = "ID:BASE64", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Retired master keys (`id:base64`, comma-separated), kept to read older objects.
    #[arg(long, env = OLD_MASTER_KEYS_VAR, value_name = "KEYS", hide_env_values = true)]
    pub master_keys_old: Option<String>,
}

impl MasterKeyArgs {
    /// The key ring; the current key must be set.
    pub fn key_ring(&self) -> Result<KeyRing, CryptoError> {
        KeyRing::configured(
            given(self.master_key.as_deref()).as_deref(),
            given(self.master_keys_old.as_deref()).as_deref(),
        )
    }

    /// The embedded default: the configured keys when a current key is set, otherwise the
    /// key file in `data_dir`, generated on first use.
    pub fn key_ring_or_data_dir(&self, data_dir: &Path) -> Result<KeyRing, CryptoError> {
        match given(self.master_key.as_deref()) {
            Some(_) => self.key_ring(),
            None => KeyRing::load_or_create(&data_dir.join(crate::crypto::KEY_FILE)),
        }
    }
}

/// The HS256 secret bearer tokens are signed with.
#[derive(Args, Clone)]
pub struct JwtSecretArgs {
    /// HS256 secret for bearer tokens.
    #[arg(
        long,
        env = "RYTHMIQ_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,
}

impl JwtSecretArgs {
    /// The secret, when one is set.
    pub fn get(&self) -> Option<String> {
        // Only blankness is checked: a secret's surrounding spaces are its own business.
        self.jwt_secret.clone().filter(|s| !s.trim().is_empty())
    }
}

/// The HTTP API's limits and accepted identity providers.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// Largest upload in bytes (20 MiB); larger gets 413.
    #[arg(long, env = "RYTHMIQ_MAX_UPLOAD_BYTES", value_name = "BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Most files one POST /v1/batches may carry (more gets 422 TOO_MANY_FILES).
    #[arg(
        long,
        env = "RYTHMIQ_MAX_BATCH_FILES",
        value_name = "N",
        default_value_t = 10
    )]
    pub max_batch_files: usize,
    /// Attempts before a job fails for good (crashes count).
    #[arg(
        long,
        env = "RYTHMIQ_MAX_ATTEMPTS",
        value_name = "N",
        default_value_t = 3
    )]
    pub max_attempts: i32,
    /// Jobs one user may create per minute, fleet-wide (429 beyond); 0 = no limit.
    #[arg(
        long,
        env = "RYTHMIQ_RATE_LIMIT_PER_MINUTE",
        value_name = "N",
        default_value_t = 30
    )]
    pub rate_limit_per_minute: u32,
    /// Credits a user is given on their first submission; each job costs one.
    #[arg(
        long,
        env = "RYTHMIQ_STARTING_CREDITS",
        value_name = "N",
        default_value_t = 20
    )]
    pub starting_credits: i32,
    /// An identity provider's JWKS; its RS256/ES256 tokens are then accepted.
    #[arg(long, env = "RYTHMIQ_JWKS_URL", value_name = "URL")]
    pub jwks_url: Option<String>,
    /// Required `aud` of the provider's tokens.
    #[arg(long, env = "RYTHMIQ_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// Required `iss` of the provider's tokens.
    #[arg(long, env = "RYTHMIQ_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Serve POST /v1/sessions: short-lived tokens for new anonymous users (the student page).
    #[arg(long, env = "RYTHMIQ_GUEST_SESSIONS", value_name = "BOOL", action = ArgAction::Set, default_value_t = false)]
    pub guest_sessions: bool,
    /// Guest sessions one client address may open per hour (per API process).
    #[arg(
        long,
        env = "RYTHMIQ_GUEST_SESSIONS_PER_HOUR",
        value_name = "N",
        default_value_t = 5
    )]
    pub guest_sessions_per_hour: u32,
}

impl ApiArgs {
    /// The API's settings for a server on `listen` signing with `jwt_secret`.
    pub fn settings(&self, listen: String, jwt_secret: String) -> Result<ApiSettings> {
        if self.max_batch_files == 0 {
            return Err(Error::Config(
                "RYTHMIQ_MAX_BATCH_FILES must be at least 1".into(),
            ));
        }
        Ok(ApiSettings {
            listen,
            jwt_secret,
            max_upload_bytes: self.max_upload_bytes,
            max_batch_files: self.max_batch_files,
            max_attempts: self.max_attempts,
            rate_limit_per_minute: self.rate_limit_per_minute,
            starting_credits: self.starting_credits,
            provider: crate::auth::ProviderSettings {
                jwks_url: given(self.jwks_url.as_deref()),
                audience: given(self.jwt_audience.as_deref()),
                issuer: given(self.jwt_issuer.as_deref()),
            },
            guest_sessions: GuestSessions {
                enabled: self.guest_sessions,
                per_address_per_hour: self.guest_sessions_per_hour,
            },
        })
    }
}

/// Where the OCR models are.
#[derive(Args, Clone)]
pub struct ModelsDirArgs {
    /// Where the OCR models are (scripts/fetch-models.sh puts them there). Unset: the first of
    /// ./models, <exe dir>/models, <exe dir>/../share/rythmiq/models and
    /// $XDG_DATA_HOME/rythmiq/models (~/.local/share/rythmiq/models) that holds them.
    #[arg(long, env = "RYTHMIQ_MODELS_DIR", value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
}

/// The OCR engine as the pipeline runs it.
#[derive(Args, Clone)]
pub struct OcrArgs {
    #[command(flatten)]
    pub models: ModelsDirArgs,
    /// Longest a job's OCR passes may take, in seconds (then OCR_TIMEOUT, retried).
    #[arg(
        long,
        env = "RYTHMIQ_OCR_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 120
    )]
    pub ocr_timeout_secs: u64,
}

impl OcrArgs {
    /// The OCR time limit of one job.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.ocr_timeout_secs)
    }
}

/// How workers run jobs, shared by `rythmiq worker` and the workers of `rythmiq dev`.
#[derive(Args, Clone)]
pub struct WorkerArgs {
    /// Worker heartbeat interval in seconds.
    #[arg(
        long,
        env = "RYTHMIQ_HEARTBEAT_SECS",
        value_name = "SECS",
        default_value_t = 5
    )]
    pub heartbeat_secs: u64,
    /// Silence (seconds) after which a worker's jobs are re-run elsewhere.
    #[arg(
        long,
        env = "RYTHMIQ_ORPHAN_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 20
    )]
    pub orphan_timeout_secs: u64,
    /// Idle poll in milliseconds, a fallback to LISTEN/NOTIFY wake-ups.
    #[arg(
        long,
        env = "RYTHMIQ_POLL_INTERVAL_MS",
        value_name = "MS",
        default_value_t = 1000
    )]
    pub poll_interval_ms: u64,
    /// First retry delay in seconds; doubles per attempt.
    #[arg(
        long,
        env = "RYTHMIQ_RETRY_BASE_SECS",
        value_name = "SECS",
        default_value_t = 2
    )]
    pub retry_base_secs: u64,
    /// Longest retry delay in seconds.
    #[arg(
        long,
        env = "RYTHMIQ_RETRY_MAX_SECS",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub retry_max_secs: u64,
    /// Time (seconds) in-flight jobs get to finish on SIGTERM.
    #[arg(
        long,
        env = "RYTHMIQ_SHUTDOWN_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub shutdown_timeout_secs: u64,
    /// Longest one attempt may run, in seconds (then INTERNAL, retried).
    #[arg(
        long,
        env = "RYTHMIQ_JOB_TIMEOUT_SECS",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub job_timeout_secs: u64,
    /// How often (seconds) the fleet refreshes rollups and applies retention.
    #[arg(
        long,
        env = "RYTHMIQ_MAINTENANCE_SECS",
        value_name = "SECS",
        default_value_t = 300
    )]
    pub maintenance_secs: u64,
    /// Age in days after which cpu_metrics and error_events rows are removed.
    #[arg(
        long,
        env = "RYTHMIQ_RETENTION_DAYS",
        value_name = "DAYS",
        default_value_t = 90
    )]
    pub retention_days: u32,
    /// Raw uploads are deleted this many hours after their job finished.
    #[arg(
        long,
        env = "RYTHMIQ_RAW_RETENTION_HOURS",
        value_name = "HOURS",
        default_value_t = 24
    )]
    pub raw_retention_hours: u64,
    /// Outputs (and a document's OCR text) are deleted this many days after completion.
    #[arg(
        long,
        env = "RYTHMIQ_OUTPUT_RETENTION_DAYS",
        value_name = "DAYS",
        default_value_t = 7
    )]
    pub output_retention_days: u64,
    /// Finished queue tasks (apalis `Done` and `Killed`) are deleted this many hours after
    /// they finished; their jobs' rows stay.
    #[arg(
        long,
        env = "RYTHMIQ_TASK_RETENTION_HOURS",
        value_name = "HOURS",
        default_value_t = 24
    )]
    pub task_retention_hours: u64,
    /// Inference threads per OCR run; 0 = cores ÷ concurrency.
    #[arg(
        long,
        env = "RYTHMIQ_OCR_THREADS",
        value_name = "N",
        default_value_t = 0
    )]
    pub ocr_threads: usize,
    /// The worker's name prefix when /etc/hostname is missing or empty.
    #[arg(long, env = "HOSTNAME", value_name = "NAME")]
    pub hostname: Option<String>,
    #[command(flatten)]
    pub ocr: OcrArgs,
}

impl WorkerArgs {
    /// The settings of workers that each run `concurrency` jobs at once.
    pub fn settings(&self, concurrency: usize) -> Result<WorkerSettings> {
        if concurrency == 0 {
            return Err(Error::Config(
                "RYTHMIQ_WORKER_CONCURRENCY must be at least 1".into(),
            ));
        }
        if self.orphan_timeout_secs <= self.heartbeat_secs {
            return Err(Error::Config(
                "RYTHMIQ_ORPHAN_TIMEOUT_SECS must be longer than RYTHMIQ_HEARTBEAT_SECS".into(),
            ));
        }
        Ok(WorkerSettings {
            concurrency,
            heartbeat: Duration::from_secs(self.heartbeat_secs),
            orphan_timeout: Duration::from_secs(self.orphan_timeout_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            retry_base: Duration::from_secs(self.retry_base_secs),
            retry_max: Duration::from_secs(self.retry_max_secs),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
            job_timeout: Duration::from_secs(self.job_timeout_secs),
            maintenance_interval: Duration::from_secs(self.maintenance_secs),
            retention_days: self.retention_days,
            raw_retention: Duration::from_secs(self.raw_retention_hours.saturating_mul(3600)),
            output_retention: Duration::from_secs(
                self.output_retention_days.saturating_mul(86_400),
            ),
            task_retention: Duration::from_secs(self.task_retention_hours.saturating_mul(3600)),
            ocr_timeout: self.ocr.timeout(),
            ocr_threads: self.ocr_threads,
            hostname: given(self.hostname.as_deref()),
        })
    }
}

impl ValueEnum for LogFormat {
    fn value_variants<'a>() -> &'a [Self] {
        &[Self::Json, Self::Text]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Self::Json => "json",
            Self::Text => "text",
        }))
    }
}

/// Log lines of the long-running services (`api`, `worker`, `migrate`): JSON for the log
/// pipeline.
#[derive(Args, Clone)]
pub struct ServiceLogArgs {
    /// `json` or `text` log lines.
    #[arg(long, env = "RYTHMIQ_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber's EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", value_name = "FILTER", default_value = SERVICE_LOG_FILTER)]
    pub log_filter: String,
}

/// Log lines of `rythmiq dev`: readable text, at the services' level.
#[derive(Args, Clone)]
pub struct DevLogArgs {
    /// `json` or `text` log lines.
    #[arg(long, env = "RYTHMIQ_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber's EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", value_name = "FILTER", default_value = SERVICE_LOG_FILTER)]
    pub log_filter: String,
}

/// Log lines of one-shot commands: readable text, and only trouble (their output is the result).
#[derive(Args, Clone)]
pub struct CliLogArgs {
    /// `json` or `text` log lines.
    #[arg(long, env = "RYTHMIQ_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing-subscriber's EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", value_name = "FILTER", default_value = CLI_LOG_FILTER)]
    pub log_filter: String,
}

macro_rules! log_settings {
    ($($args:ty),*) => {$(
        impl $args {
            /// The telemetry's log settings.
            pub fn settings(&self) -> LogSettings {
                LogSettings {
                    format: self.log_format,
                    filter: self.log_filter.clone(),
                }
            }
        }
    )*};
}
log_settings!(ServiceLogArgs, DevLogArgs, CliLogArgs);

/// Settings of the object store.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub root: PathBuf,
    pub fetch_timeout: Duration,
    pub upload_timeout: Duration,
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
    /// `POST /v1/sessions`: anonymous guest users (off by default).
    pub guest_sessions: GuestSessions,
}

/// Guest sessions: `POST /v1/sessions` mints a short-lived token for a new anonymous user, who
/// gets the starting credits on their first submission like any new user.
#[derive(Debug, Clone, Default)]
pub struct GuestSessions {
    /// Off unless `RYTHMIQ_GUEST_SESSIONS=true`: the route answers 404 then.
    pub enabled: bool,
    /// Sessions one client address may open per hour; 0 = no limit.
    pub per_address_per_hour: u32,
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
    /// Finished queue tasks are deleted this long after they finished (the jobs' rows stay).
    pub task_retention: Duration,
    /// Longest OCR may take in one job (`OCR_TIMEOUT`, retried).
    pub ocr_timeout: Duration,
    /// Inference threads per OCR run; 0 sizes it so that concurrency × threads ≈ cores.
    pub ocr_threads: usize,
    /// The worker's name prefix when `/etc/hostname` is missing or empty (`HOSTNAME`).
    pub hostname: Option<String>,
}

impl WorkerSettings {
    /// OCR inference threads for a process running `runtimes` workers of this concurrency:
    /// the configured number, or cores shared out so that jobs × threads ≈ cores.
    pub fn ocr_threads_for(&self, runtimes: usize) -> usize {
        if self.ocr_threads > 0 {
            return self.ocr_threads;
        }
        (available_cores() / (self.concurrency * runtimes.max(1)).max(1)).max(1)
    }

    /// Delay before retry number `attempt` (1-based): exponential, capped.
    pub fn backoff(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        self.retry_base
            .saturating_mul(2u32.saturating_pow(exp))
            .min(self.retry_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
            task_retention: Duration::from_secs(86_400),
            ocr_timeout: Duration::from_secs(120),
            ocr_threads: 0,
            hostname: None,
        };
        assert_eq!(s.backoff(1), Duration::from_secs(2));
        assert_eq!(s.backoff(2), Duration::from_secs(4));
        assert_eq!(s.backoff(3), Duration::from_secs(8));
        assert_eq!(s.backoff(4), Duration::from_secs(10));
        s.retry_max = Duration::from_secs(10_000);
        assert_eq!(s.backoff(100), Duration::from_secs(10_000));

        // OCR threads share the cores among the jobs that run at once.
        let cores = available_cores();
        assert_eq!(s.ocr_threads_for(1), cores);
        s.concurrency = cores * 4;
        assert_eq!(s.ocr_threads_for(1), 1);
        s.ocr_threads = 3;
        assert_eq!(s.ocr_threads_for(2), 3);
    }

    /// A command made of the pieces, parsed from flags only (the environment is not touched).
    #[derive(Parser)]
    #[command(no_binary_name = true)]
    struct Pieces {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        keys: MasterKeyArgs,
    }

    fn parse(args: &[&str]) -> Pieces {
        Pieces::command()
            .mut_args(|a| a.env(None::<&'static str>))
            .try_get_matches_from(args)
            .and_then(|m| <Pieces as clap::FromArgMatches>::from_arg_matches(&m))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    use clap::CommandFactory;

    #[test]
    fn cross_field_rules_name_their_variables() {
        let p = parse(&[]);
        assert_eq!(
            p.api
                .settings("l".into(), "s".into())
                .map(|s| s.max_upload_bytes)
                .ok(),
            Some(20 << 20)
        );
        let w = p.worker.settings(2).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(w.ocr_timeout, Duration::from_secs(120));
        assert_eq!(w.raw_retention, Duration::from_secs(24 * 3600));
        assert_eq!(w.task_retention, Duration::from_secs(24 * 3600));

        fn err<T>(r: Result<T>) -> String {
            r.err().map(|e| e.to_string()).unwrap_or_default()
        }
        assert!(
            err(p.worker.settings(0)).contains("RYTHMIQ_WORKER_CONCURRENCY must be at least 1")
        );
        let p2 = parse(&["--heartbeat-secs", "20"]);
        assert!(err(p2.worker.settings(1)).contains("RYTHMIQ_ORPHAN_TIMEOUT_SECS must be longer"));
        let p3 = parse(&["--max-batch-files", "0"]);
        assert!(
            err(p3.api.settings(String::new(), String::new()).map(|_| ()))
                .contains("RYTHMIQ_MAX_BATCH_FILES must be at least 1")
        );

        // s3 needs its bucket and credentials; blank counts as unset.
        let p4 = parse(&["--storage-backend", "S3", "--s3-bucket", " "]);
        assert!(
            err(p4.storage.store.backend().map(|_| ())).contains("RYTHMIQ_S3_BUCKET must be set")
        );
        let p5 = parse(&[
            "--storage-backend",
            "s3",
            "--s3-bucket",
            "b",
            "--s3-access-key-id",
            "k",
            "--s3-secret-access-key",
            "s",
            "--s3-allow-http",
            "true",
        ]);
        match p5.storage.store.backend() {
            Ok(Backend::S3(c)) => {
                assert_eq!((c.bucket.as_str(), c.region.as_str()), ("b", "us-east-1"));
                assert!(c.allow_http && !c.virtual_hosted_style && c.endpoint.is_none());
            }
            other => panic!("{other:?}"),
        }

        // No current master key: a clear error naming the variable.
        let keys = p
            .keys
            .key_ring()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(keys.contains("RYTHMIQ_MASTER_KEY must be set"), "{keys}");
    }
}
