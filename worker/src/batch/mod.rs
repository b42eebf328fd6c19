//! Packaging a finished batch: its completed outputs, under the portals' file names, in one ZIP
//! with a `manifest.json` (every file: portal, status, name in the ZIP, error code and message
//! of the ones that failed) and a short `README.txt`, stored encrypted under
//! `output/{user_id}/{batch_id}/{ts}_output.zip.enc`.
//!
//! Who packages: the worker that records a batch job's final outcome (completed or failed, by
//! the job's own slot or by the orphan reaper's `WORKER_LOST`) tries to claim the batch right
//! after; the claim succeeds only for the last one (see [`store::claim`]). The maintenance
//! sweep ([`crate::maintenance::batch_sweep`]) claims any batch that was missed, whose run
//! failed, or whose packager died (held in `packaging` for more than twice the job time limit),
//! so a batch never hangs.
//!
//! Outcomes: `completed` when at least one file is in the ZIP; `failed` with `ALL_FILES_FAILED`
//! (and no ZIP, the manifest is still kept on the batch) when none succeeded, or with
//! `PACKAGING_FAILED` after [`MAX_PACKAGING_ATTEMPTS`] failed runs. A completed output that can
//! no longer be read (deleted or failing authentication) is left out and reported in the
//! manifest as `PACKAGING_FAILED`; a store that is only unavailable fails the run, which is
//! retried by the sweep.

pub mod store;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};
use rythmiq_shared::config::WorkerSettings;
use rythmiq_shared::domain::{BatchState, ErrorCode, JobState};
use rythmiq_shared::error::Chain;
use rythmiq_shared::storage::{ObjectKey, Storage, sanitize_filename};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::Instrument;
use uuid::Uuid;
use zip::write::SimpleFileOptions;

use crate::error::JobError;
use store::{Claimed, Finished, PackJob};

/// Packaging runs a batch gets before it fails as `PACKAGING_FAILED`.
pub const MAX_PACKAGING_ATTEMPTS: i32 = 5;
/// Name of the manifest inside the ZIP.
pub const MANIFEST_NAME: &str = "manifest.json";
/// Name of the human-readable summary inside the ZIP.
pub const README_NAME: &str = "README.txt";

/// `manifest.json`: what the package holds and what it does not.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Manifest {
    pub batch_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub packaged_at: DateTime<Utc>,
    /// Files in the ZIP.
    pub succeeded: usize,
    /// Files not in the ZIP.
    pub failed: usize,
    /// Every file of the batch, in request order.
    pub files: Vec<ManifestEntry>,
}

/// One file of the batch in the manifest.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ManifestEntry {
    /// Position in the request (0-based).
    pub index: i32,
    pub job_id: Uuid,
    pub portal: String,
    pub portal_version: i32,
    /// The upload's name, as stored (reduced to `[A-Za-z0-9._-]`).
    pub upload: Option<String>,
    /// `completed` (in the ZIP) or `failed` (not in it).
    pub status: String,
    /// The file's name in the ZIP.
    pub file: Option<String>,
    pub bytes: Option<usize>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub dpi: Option<i32>,
    pub format: Option<String>,
    /// SHA-256 of the file, hex.
    pub sha256: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The file checked against its rule, as `GET /v1/jobs/{id}` gives it (completed files).
    pub report: Option<serde_json::Value>,
}

/// What happened to a batch a caller tried to package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaged {
    /// Not ready (jobs unfinished), being packaged elsewhere, or already finished.
    NotClaimed,
    /// Finished in this state.
    Done(BatchState),
    /// This run failed; the sweep tries again (or it failed for good: `Done(Failed)`).
    Retry,
}

/// After a job's final outcome was recorded: packages its batch if it was the batch's last
/// unfinished job. Never fails the caller; problems are logged and left to the sweep.
pub async fn after_job(pool: &PgPool, storage: &Storage, settings: &WorkerSettings, job: Uuid) {
    let batch = match pool.acquire().await {
        Ok(mut conn) => store::batch_of(&mut conn, job).await,
        Err(e) => Err(e),
    };
    match batch {
        Ok(Some(batch)) => {
            package(pool, storage, settings, batch).await;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "looking up a job's batch failed; the sweep will package it")
        }
    }
}

/// Claims `batch` and packages it. Errors are recorded on the batch (and retried by the sweep)
/// rather than returned.
pub async fn package(
    pool: &PgPool,
    storage: &Storage,
    settings: &WorkerSettings,
    batch: Uuid,
) -> Packaged {
    let span = tracing::info_span!("package", otel.name = "package", service = "worker",
                                   batch_id = %batch, stage = "package");
    package_in_span(pool, storage, settings, batch)
        .instrument(span)
        .await
}

async fn package_in_span(
    pool: &PgPool,
    storage: &Storage,
    settings: &WorkerSettings,
    batch: Uuid,
) -> Packaged {
    let claimed = match claim(pool, settings, batch).await {
        Ok(Some(c)) => c,
        Ok(None) => return Packaged::NotClaimed,
        Err(e) => {
            tracing::warn!(error = %e, "claiming a batch failed; the sweep will retry");
            return Packaged::NotClaimed;
        }
    };
    let began = std::time::Instant::now();
    let run = if claimed.packaging_attempts > MAX_PACKAGING_ATTEMPTS {
        // Its packagers keep dying: stop here.
        Err(JobError::Packaging(format!(
            "packaging did not finish in {MAX_PACKAGING_ATTEMPTS} attempts"
        )))
    } else {
        match tokio::time::timeout(
            settings.job_timeout,
            build_and_store(pool, storage, &claimed),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(JobError::Packaging(format!(
                "packaging ran longer than {} s",
                settings.job_timeout.as_secs()
            ))),
        }
    };
    let latency_ms = began.elapsed().as_secs_f64() * 1000.0;
    match run {
        Ok(done) => {
            let state = done.state;
            match record(pool, &claimed, &done).await {
                Ok(true) => {
                    let files = done.zip.as_ref().map_or(0, |z| z.2);
                    tracing::info!(latency_ms, files, state = ?state, "batch packaged");
                    Packaged::Done(state)
                }
                Ok(false) => {
                    tracing::warn!("batch was taken over while packaging; this result is dropped");
                    Packaged::NotClaimed
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recording a package failed; the sweep will retry");
                    Packaged::Retry
                }
            }
        }
        Err(err) => {
            let give_up = claimed.packaging_attempts >= MAX_PACKAGING_ATTEMPTS;
            let code = ErrorCode::PackagingFailed;
            metrics::counter!(rythmiq_shared::metrics::ERRORS_TOTAL, "code" => code.as_str(),
                              "stage" => code.stage())
            .increment(1);
            if give_up {
                tracing::error!(error_code = %code, error = %Chain(&err), latency_ms,
                                attempt = claimed.packaging_attempts, "batch packaging failed");
                let done = Finished {
                    state: BatchState::Failed,
                    zip: None,
                    report: None,
                    error: Some((code, err.message())),
                };
                match record(pool, &claimed, &done).await {
                    Ok(_) => Packaged::Done(BatchState::Failed),
                    Err(e) => {
                        tracing::warn!(error = %e, "recording a packaging failure failed");
                        Packaged::Retry
                    }
                }
            } else {
                tracing::warn!(error_code = %code, error = %Chain(&err), latency_ms,
                               attempt = claimed.packaging_attempts,
                               "batch packaging failed; the sweep will retry");
                if let Err(e) = release(pool, &claimed).await {
                    // The claim goes stale and the sweep takes it over.
                    tracing::warn!(error = %e, "handing a batch back failed");
                }
                Packaged::Retry
            }
        }
    }
}

async fn claim(
    pool: &PgPool,
    settings: &WorkerSettings,
    batch: Uuid,
) -> Result<Option<Claimed>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    store::claim(&mut conn, batch, stale_after(settings)).await
}

async fn record(pool: &PgPool, claimed: &Claimed, done: &Finished) -> Result<bool, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    store::finish(&mut conn, claimed, done).await
}

async fn release(pool: &PgPool, claimed: &Claimed) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    store::release(&mut conn, claimed).await
}

/// A claim older than this is a dead packager's: twice the time a run may take.
pub(crate) fn stale_after(settings: &WorkerSettings) -> Duration {
    settings.job_timeout.saturating_mul(2)
}

/// One output read back for the package, or why it could not be.
enum Collected {
    File(Bytes),
    Missing(String),
}

/// Reads the outputs, builds the ZIP off the async threads, stores it sealed for the batch.
async fn build_and_store(
    pool: &PgPool,
    storage: &Storage,
    claimed: &Claimed,
) -> Result<Finished, JobError> {
    let jobs = {
        let mut conn = pool.acquire().await?;
        store::jobs(&mut conn, claimed.id).await?
    };
    let mut collected = Vec::with_capacity(jobs.len());
    for job in &jobs {
        collected.push(collect(storage, job).await?);
    }
    let packaged_at = Utc::now();
    let (manifest, files) = plan(claimed, &jobs, collected, packaged_at);
    let report = serde_json::to_value(&manifest).map_err(|e| JobError::Packaging(e.to_string()))?;
    if files.is_empty() {
        let failed = manifest.failed;
        return Ok(Finished {
            state: BatchState::Failed,
            zip: None,
            report: Some(report),
            error: Some((
                ErrorCode::AllFilesFailed,
                format!("none of the batch's {failed} files could be made; see each file's error"),
            )),
        });
    }
    let count = i32::try_from(files.len()).unwrap_or(i32::MAX);
    let zip = tokio::task::spawn_blocking(move || build_zip(&manifest, &files))
        .await
        .map_err(|e| JobError::Packaging(format!("ZIP builder stopped: {e}")))??;
    let bytes = i64::try_from(zip.len()).unwrap_or(i64::MAX);
    // Named after the batch's creation, so a retried run replaces the same object.
    let key = ObjectKey::batch_zip(claimed.user_id, claimed.id, claimed.created_at.timestamp())
        .map_err(|e| JobError::Packaging(e.to_string()))?;
    storage
        .put_object(&key, Bytes::from(zip))
        .await
        .map_err(|e| JobError::UploadFailed(e.to_string()))?;
    Ok(Finished {
        state: BatchState::Completed,
        zip: Some((key.as_str().to_owned(), bytes, count)),
        report: Some(report),
        error: None,
    })
}

/// A completed job's output, decrypted. A store that is only unavailable fails the run (it is
/// retried); an output that is gone or does not authenticate is reported instead.
async fn collect(storage: &Storage, job: &PackJob) -> Result<Option<Collected>, JobError> {
    if job.state != JobState::Completed {
        return Ok(None);
    }
    if job.output_deleted_at.is_some() {
        return Ok(Some(Collected::Missing(
            "the output was deleted after its retention period".into(),
        )));
    }
    let Some(key) = job.output_key.as_deref() else {
        return Ok(Some(Collected::Missing(
            "the job recorded no output".into(),
        )));
    };
    let key = match ObjectKey::parse(key) {
        Ok(k) => k,
        Err(e) => return Ok(Some(Collected::Missing(format!("invalid output key: {e}")))),
    };
    match storage.get_object(&key).await {
        Ok(bytes) => Ok(Some(Collected::File(bytes))),
        Err(e) if e.is_retryable() => Err(JobError::FetchTimeout),
        Err(e) => Ok(Some(Collected::Missing(format!(
            "the output could not be read back: {e}"
        )))),
    }
}

/// The manifest and the `(name in the ZIP, bytes)` of every file that goes in.
fn plan(
    claimed: &Claimed,
    jobs: &[PackJob],
    collected: Vec<Option<Collected>>,
    packaged_at: DateTime<Utc>,
) -> (Manifest, Vec<(String, Bytes)>) {
    let mut names = ZipNames::default();
    let mut files = Vec::new();
    let mut entries = Vec::with_capacity(jobs.len());
    for (job, got) in jobs.iter().zip(collected) {
        let mut entry = ManifestEntry {
            index: job.batch_index,
            job_id: job.id,
            portal: job.slug.clone(),
            portal_version: job.portal_schema_version,
            upload: job.upload_filename.clone(),
            status: "failed".into(),
            file: None,
            bytes: None,
            width: None,
            height: None,
            dpi: None,
            format: None,
            sha256: None,
            error_code: job.error_code.clone(),
            error_message: job.error_message.clone(),
            report: None,
        };
        match got {
            Some(Collected::File(bytes)) => {
                let wanted = job.output_filename.clone().unwrap_or_else(|| {
                    format!(
                        "file_{}.{}",
                        job.batch_index + 1,
                        job.output_format.as_deref().unwrap_or("bin")
                    )
                });
                let name = names.claim(&wanted);
                entry.status = "completed".into();
                entry.file = Some(name.clone());
                entry.bytes = Some(bytes.len());
                entry.width = job.output_width;
                entry.height = job.output_height;
                entry.dpi = job.output_dpi;
                entry.format = job.output_format.clone();
                entry.sha256 = Some(hex::encode(Sha256::digest(&bytes)));
                entry.error_code = None;
                entry.error_message = None;
                entry.report = job.report.clone();
                files.push((name, bytes));
            }
            Some(Collected::Missing(why)) => {
                entry.error_code = Some(ErrorCode::PackagingFailed.as_str().to_owned());
                entry.error_message = Some(why);
            }
            None => {
                if entry.error_code.is_none() {
                    // Failed without a code (should not happen): say so rather than nothing.
                    entry.error_code = Some(ErrorCode::Internal.as_str().to_owned());
                }
            }
        }
        entries.push(entry);
    }
    let succeeded = files.len();
    let manifest = Manifest {
        batch_id: claimed.id,
        created_at: claimed.created_at,
        packaged_at,
        succeeded,
        failed: entries.len() - succeeded,
        files: entries,
    };
    (manifest, files)
}

/// File names inside one ZIP: safe characters only, never the manifest's or README's, and
/// unique without regard to case (archives are often unpacked on case-insensitive systems);
/// a repeated name gets `_2`, `_3`… before its extension.
#[derive(Debug, Default)]
struct ZipNames {
    taken: HashSet<String>,
}

impl ZipNames {
    fn claim(&mut self, wanted: &str) -> String {
        if self.taken.is_empty() {
            self.taken.insert(MANIFEST_NAME.to_ascii_lowercase());
            self.taken.insert(README_NAME.to_ascii_lowercase());
        }
        let clean = sanitize_filename(wanted);
        let (stem, ext) = match clean.rsplit_once('.') {
            Some((s, e)) if !s.is_empty() => (s.to_owned(), format!(".{e}")),
            _ => (clean.clone(), String::new()),
        };
        let mut name = clean;
        let mut n = 1;
        while self.taken.contains(&name.to_ascii_lowercase()) {
            n += 1;
            name = format!("{stem}_{n}{ext}");
        }
        self.taken.insert(name.to_ascii_lowercase());
        name
    }
}

/// The ZIP: every file stored as is (JPEG, PNG and PDF are compressed already), then
/// `manifest.json` and `README.txt`, all dated `packaged_at` (UTC). Blocking: call from a
/// blocking thread.
pub fn build_zip(manifest: &Manifest, files: &[(String, Bytes)]) -> Result<Vec<u8>, JobError> {
    let err = |e: zip::result::ZipError| JobError::Packaging(format!("writing the ZIP: {e}"));
    let io = |e: std::io::Error| JobError::Packaging(format!("writing the ZIP: {e}"));
    let at = manifest.packaged_at;
    let stamp = zip::DateTime::from_date_and_time(
        u16::try_from(at.year()).unwrap_or(1980),
        u8::try_from(at.month()).unwrap_or(1),
        u8::try_from(at.day()).unwrap_or(1),
        u8::try_from(at.hour()).unwrap_or(0),
        u8::try_from(at.minute()).unwrap_or(0),
        u8::try_from(at.second()).unwrap_or(0),
    )
    .unwrap_or_default();
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(stamp)
        .unix_permissions(0o644);
    let total: usize = files.iter().map(|(_, b)| b.len() + 128).sum();
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::with_capacity(total + 8192)));
    for (name, bytes) in files {
        zip.start_file(name.as_str(), options).map_err(err)?;
        zip.write_all(bytes).map_err(io)?;
    }
    let manifest_json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| JobError::Packaging(format!("manifest: {e}")))?;
    zip.start_file(MANIFEST_NAME, options).map_err(err)?;
    zip.write_all(&manifest_json).map_err(io)?;
    zip.start_file(README_NAME, options).map_err(err)?;
    zip.write_all(readme(manifest).as_bytes()).map_err(io)?;
    Ok(zip.finish().map_err(err)?.into_inner())
}

/// `README.txt`: which files are ready and which are not, and why.
fn readme(m: &Manifest) -> String {
    let total = m.files.len();
    let mut out = format!(
        "Rythmiq batch {}\r\n\r\n{} of {} files are ready to upload to their portals.\r\n",
        m.batch_id, m.succeeded, total
    );
    let ready: Vec<_> = m.files.iter().filter(|f| f.file.is_some()).collect();
    if !ready.is_empty() {
        out.push_str("\r\nReady:\r\n");
        for f in ready {
            out.push_str(&format!(
                "  {}  for {} (upload {}: {})\r\n",
                f.file.as_deref().unwrap_or_default(),
                f.portal,
                f.index + 1,
                f.upload.as_deref().unwrap_or("unnamed")
            ));
        }
    }
    let failed: Vec<_> = m.files.iter().filter(|f| f.file.is_none()).collect();
    if !failed.is_empty() {
        out.push_str("\r\nNot included (submit these again):\r\n");
        for f in failed {
            out.push_str(&format!(
                "  upload {} ({}) for {}: {} - {}\r\n",
                f.index + 1,
                f.upload.as_deref().unwrap_or("unnamed"),
                f.portal,
                f.error_code.as_deref().unwrap_or("INTERNAL"),
                f.error_message.as_deref().unwrap_or("no details")
            ));
        }
    }
    out.push_str(&format!(
        "\r\n{MANIFEST_NAME} lists every file with its size, dimensions and SHA-256.\r\n"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn job(index: i32, state: JobState, name: Option<&str>) -> PackJob {
        PackJob {
            id: Uuid::new_v4(),
            batch_index: index,
            slug: "neet-ug-2026-photo".into(),
            portal_schema_version: 1,
            upload_filename: Some(format!("upload{index}.jpg")),
            state,
            error_code: (state == JobState::Failed).then(|| "DECODE_FAILED".into()),
            error_message: (state == JobState::Failed).then(|| "cannot decode".into()),
            output_key: None,
            output_filename: name.map(Into::into),
            output_format: Some("jpg".into()),
            output_width: Some(200),
            output_height: Some(230),
            output_dpi: Some(200),
            output_deleted_at: None,
            report: None,
        }
    }

    #[test]
    fn zip_names_are_safe_unique_and_keep_the_extension() {
        let mut n = ZipNames::default();
        assert_eq!(n.claim("neet_photo_1.jpg"), "neet_photo_1.jpg");
        assert_eq!(n.claim("neet_photo_1.jpg"), "neet_photo_1_2.jpg");
        assert_eq!(n.claim("NEET_PHOTO_1.JPG"), "NEET_PHOTO_1_3.JPG");
        assert_eq!(n.claim("../../etc/passwd"), "passwd");
        assert_eq!(n.claim("manifest.json"), "manifest_2.json");
        assert_eq!(n.claim("readme.TXT"), "readme_2.TXT");
        assert_eq!(n.claim("noext"), "noext");
        assert_eq!(n.claim("noext"), "noext_2");
        assert_eq!(n.claim(""), "upload");
    }

    #[test]
    fn the_zip_holds_what_succeeded_and_the_manifest_says_what_did_not() -> TestResult {
        let claimed = Claimed {
            id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            packaging_attempts: 1,
            created_at: Utc::now(),
        };
        let jobs = vec![
            job(0, JobState::Completed, Some("photo.jpg")),
            job(1, JobState::Completed, Some("photo.jpg")),
            job(2, JobState::Failed, None),
            job(3, JobState::Completed, Some("gone.jpg")),
        ];
        let collected = vec![
            Some(Collected::File(Bytes::from_static(b"first"))),
            Some(Collected::File(Bytes::from_static(b"second"))),
            None,
            Some(Collected::Missing("deleted".into())),
        ];
        let (manifest, files) = plan(&claimed, &jobs, collected, Utc::now());
        assert_eq!((manifest.succeeded, manifest.failed), (2, 2));
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["photo.jpg", "photo_2.jpg"]);
        assert_eq!(
            manifest.files[2].error_code.as_deref(),
            Some("DECODE_FAILED")
        );
        assert_eq!(manifest.files[2].status, "failed");
        assert_eq!(
            manifest.files[3].error_code.as_deref(),
            Some("PACKAGING_FAILED")
        );

        let zip = build_zip(&manifest, &files)?;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip))?;
        let mut listed = archive
            .file_names()
            .map(|n| n.map(|s| s.into_owned()))
            .collect::<Result<Vec<String>, _>>()?;
        listed.sort();
        assert_eq!(
            listed,
            ["README.txt", "manifest.json", "photo.jpg", "photo_2.jpg"]
        );
        let mut second = Vec::new();
        archive.by_name("photo_2.jpg")?.read_to_end(&mut second)?;
        assert_eq!(second, b"second");
        let mut json = Vec::new();
        archive.by_name(MANIFEST_NAME)?.read_to_end(&mut json)?;
        let read: Manifest = serde_json::from_slice(&json)?;
        assert_eq!(read, manifest);
        assert_eq!(
            read.files[0].sha256.as_deref(),
            Some(hex::encode(Sha256::digest(b"first")).as_str())
        );
        let mut text = String::new();
        archive.by_name(README_NAME)?.read_to_string(&mut text)?;
        assert!(text.contains("2 of 4 files"), "{text}");
        assert!(text.contains("DECODE_FAILED - cannot decode"), "{text}");
        Ok(())
    }
}
