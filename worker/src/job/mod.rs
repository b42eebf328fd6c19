//! One job's run: FETCH the upload from storage, run the CPU pipeline
//! ([`rythmiq_pipeline::process_and_check`]) on the blocking pool, UPLOAD the verified output (and a
//! document's recognised text). This module holds the I/O; the image work is `rythmiq-pipeline`.

pub mod fetch;
pub mod upload;

use std::time::Instant;

use rythmiq_pipeline::check::Report;
use rythmiq_pipeline::decode::DecodeLimits;
use rythmiq_pipeline::{
    Processed, StageTiming, fit, log_stage, ocr, process_and_check, stage_span,
};
use rythmiq_shared::domain::PortalRule;
use rythmiq_shared::storage::Storage;
use serde::Serialize;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::JobError;

/// What a job needs to know to run.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub job_id: Uuid,
    pub user_id: Uuid,
    pub input_key: String,
    pub rule: PortalRule,
}

/// Runs an I/O stage on the async runtime in its span. Its CPU is what its polls took, on
/// whichever thread, plus the sealing and opening of objects on the blocking pool
/// ([`rythmiq_shared::cpu::measure`]): what the stage computed, not its waits.
async fn io_stage<T>(
    name: &'static str,
    work: impl std::future::Future<Output = Result<T, JobError>>,
) -> Result<(T, StageTiming), JobError> {
    let span = stage_span(name);
    let started = Instant::now();
    let (out, cpu) = rythmiq_shared::cpu::measure(work.instrument(span.clone())).await;
    let timing = StageTiming {
        name,
        cpu_seconds: cpu.as_secs_f64(),
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    span.in_scope(|| log_stage(&timing));
    Ok((out?, timing))
}

/// What a successful job produced.
#[derive(Debug, Clone, Serialize)]
pub struct JobOutput {
    pub output_key: String,
    pub filename: String,
    pub bytes: u64,
    /// Where a document's recognised text is stored (JSON next to the output).
    pub ocr_text_key: Option<String>,
    pub processed: Processed,
    /// The output checked against its rule (`None` if it could not be read back).
    pub report: Option<Report>,
}

/// The pipeline and what it shares across jobs: storage, limits and the OCR engine, loaded
/// once per worker process.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub storage: Storage,
    pub limits: DecodeLimits,
    pub ocr: ocr::OcrStage,
}

impl Pipeline {
    pub fn new(storage: Storage, ocr: ocr::OcrStage) -> Self {
        Self {
            storage,
            limits: DecodeLimits::default(),
            ocr,
        }
    }

    /// Runs every stage for one job.
    pub async fn run(&self, job: &JobInput) -> Result<JobOutput, JobError> {
        let (input, fetch_timing) =
            io_stage("fetch", fetch::fetch(&self.storage, &job.input_key)).await?;

        let limits = self.limits.clone();
        let rule = job.rule.clone();
        let ocr = self.ocr.clone();
        // The blocking thread continues the job's span, so its stages nest under the job.
        let parent = tracing::Span::current();
        let filename = fit::output_filename(&job.rule, job.job_id);
        let name = filename.clone();
        let (mut processed, report) = tokio::task::spawn_blocking(move || {
            parent.in_scope(|| {
                // The output held against its rule as a student's own file would be: the same
                // report `rythmiq check` and `POST /v1/checks` give.
                let (processed, report) = process_and_check(&input, &rule, &limits, &ocr, &name)?;
                Ok::<_, rythmiq_pipeline::Error>((processed, report))
            })
        })
        .await
        .map_err(|e| JobError::internal("image stage panicked", e))??;

        let page = processed.ocr.as_ref().and_then(|r| r.page.as_ref());
        let ((key, ocr_text_key), upload_timing) = io_stage("upload", async {
            let key =
                upload::upload(&self.storage, job, &filename, processed.bytes.clone()).await?;
            let ocr_text_key = match page {
                Some(page) => {
                    let text = serde_json::to_vec(&rythmiq_ocr::to_json(page))
                        .map_err(|e| JobError::internal("OCR text", e))?;
                    let name = format!("{filename}.ocr.json");
                    Some(upload::upload(&self.storage, job, &name, text).await?)
                }
                None => None,
            };
            Ok((key, ocr_text_key))
        })
        .await?;
        processed.stages.insert(0, fetch_timing);
        processed.stages.push(upload_timing);
        Ok(JobOutput {
            output_key: key,
            filename,
            bytes: processed.bytes.len() as u64,
            ocr_text_key,
            processed,
            report,
        })
    }
}
