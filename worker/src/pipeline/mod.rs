//! The pipeline one job runs: FETCH → decode → SCHEMA fit → UPLOAD.
//!
//! QUALITY, PRE-OCR, ENHANCE and OCR slot in between decode and SCHEMA in later work. Each stage
//! is a module; CPU-bound stages run on the blocking pool so the async runtime (heartbeats, the
//! claim loop) never stalls.

pub mod decode;
pub mod fetch;
pub mod schema_fit;
pub mod upload;

use std::time::Instant;

use rythmiq_shared::domain::{OutputFormat, PortalRule};
use rythmiq_shared::storage::Storage;
use serde::Serialize;
use uuid::Uuid;

use crate::error::JobError;
use decode::DecodeLimits;

/// What a job needs to know to run.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub input_key: String,
    pub rule: PortalRule,
}

/// What a successful run produced.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutput {
    pub output_key: String,
    pub filename: String,
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    pub dpi: u32,
    pub format: OutputFormat,
    pub warnings: Vec<String>,
    pub stages: Vec<StageTiming>,
}

/// Wall time of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub name: &'static str,
    pub wall_seconds: f64,
}

/// The pipeline and what it shares across jobs.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub storage: Storage,
    pub limits: DecodeLimits,
}

impl Pipeline {
    pub fn new(storage: Storage) -> Self {
        Self {
            storage,
            limits: DecodeLimits::default(),
        }
    }

    /// Runs every stage for one job.
    pub async fn run(&self, job: &JobInput) -> Result<JobOutput, JobError> {
        let mut stages = Vec::new();
        let mut timed = |name, started: Instant| {
            stages.push(StageTiming {
                name,
                wall_seconds: started.elapsed().as_secs_f64(),
            });
        };

        let t = Instant::now();
        let input = fetch::fetch(&self.storage, &job.input_key).await?;
        timed("fetch", t);

        let t = Instant::now();
        let limits = self.limits.clone();
        let rule = job.rule.clone();
        let fitted = tokio::task::spawn_blocking(move || -> Result<_, JobError> {
            let image = decode::decode(&input, &limits)?;
            Ok(schema_fit::fit(&image, &rule)?)
        })
        .await
        .map_err(|e| JobError::Internal(format!("image stage panicked: {e}")))??;
        timed("schema", t);

        let t = Instant::now();
        let filename = schema_fit::output_filename(&job.rule, job.job_id);
        let key = upload::upload(&self.storage, job, &filename, fitted.bytes.clone()).await?;
        timed("upload", t);

        Ok(JobOutput {
            output_key: key,
            filename,
            bytes: fitted.bytes.len() as u64,
            width: fitted.width,
            height: fitted.height,
            dpi: fitted.dpi,
            format: fitted.format,
            warnings: fitted.warnings,
            stages,
        })
    }
}
