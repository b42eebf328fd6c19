//! `/v1/jobs`: create a job (one transaction writes the row and enqueues the task), read its
//! status (optionally waiting for it to finish), download its output.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rythmiq_shared::db;
use rythmiq_shared::domain::{JobState, OutputFormat};
use rythmiq_shared::signing::{DEFAULT_TTL, LinkQuery, LinkSigner};
use rythmiq_shared::storage::{raw_key, sanitize_filename};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use uuid::Uuid;

use crate::AppState;
use crate::auth::User;
use crate::enqueue::{self, NewJob};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Multipart, Path, Query};
use crate::observe::CorrelationId;

/// Longest `?wait=` accepted, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

/// Response to `POST /v1/jobs`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"job_id": "0f8e3a52-4c1d-4b8e-9a57-3d2f6c1b7e90", "status": "pending"}))]
pub struct Created {
    pub job_id: Uuid,
    #[schema(value_type = String)]
    pub status: JobState,
}

/// The produced file's properties.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutputInfo {
    pub bytes: i64,
    pub width: i32,
    pub height: i32,
    pub dpi: i32,
    pub format: String,
    pub filename: String,
}

/// A `jobs` row's output columns (`#[sqlx(flatten)]` into the rows that select them).
#[derive(FromRow)]
pub(crate) struct OutputColumns {
    pub output_bytes: Option<i64>,
    pub output_width: Option<i32>,
    pub output_height: Option<i32>,
    pub output_dpi: Option<i32>,
    pub output_format: Option<String>,
    pub output_filename: Option<String>,
}

impl OutputColumns {
    /// What a job in `state` produced: nothing until it is completed.
    pub(crate) fn info(self, state: JobState) -> Option<OutputInfo> {
        match (
            self.output_bytes,
            self.output_width,
            self.output_height,
            self.output_dpi,
        ) {
            (Some(bytes), Some(width), Some(height), Some(dpi)) if state == JobState::Completed => {
                Some(OutputInfo {
                    bytes,
                    width,
                    height,
                    dpi,
                    format: self.output_format.unwrap_or_default(),
                    filename: self.output_filename.unwrap_or_default(),
                })
            }
            _ => None,
        }
    }
}

/// What OCR read from the upload (the text itself is stored, never returned here or logged).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OcrInfo {
    pub confidence: f64,
    pub lines: i64,
    pub chars: i64,
    /// ENHANCE was undone because it lowered OCR confidence.
    pub rolled_back: bool,
}

/// Response to `GET /v1/jobs/{id}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "job_id": "0f8e3a52-4c1d-4b8e-9a57-3d2f6c1b7e90", "status": "completed",
    "portal": "neet-ug-2026-photo", "portal_version": 1, "error_code": null,
    "error_message": null, "attempts": 1,
    "output": {"bytes": 24817, "width": 200, "height": 230, "dpi": 200, "format": "jpg",
               "filename": "neet-ug-2026-photo.jpg"},
    "download_url": "/v1/download/0f8e3a52-4c1d-4b8e-9a57-3d2f6c1b7e90?exp=1777716000&sig=…",
    "ocr": {"confidence": 0.91, "lines": 0, "chars": 0, "rolled_back": false},
    "warnings": [],
    "report": {"portal": "neet-ug-2026-photo", "compliant": true, "checks": [
        {"rule": "size", "passed": true, "expected": "10–100 KB (10240–100000 bytes)",
         "found": "24 KB (24817 bytes)", "message": "24 KB, inside the 10–100 KB window"}]},
    "correlation_id": "c0ffee-42",
    "created_at": "2026-05-01T10:00:00Z", "started_at": "2026-05-01T10:00:00.2Z",
    "finished_at": "2026-05-01T10:00:01.1Z"}))]
pub struct JobView {
    pub job_id: Uuid,
    #[schema(value_type = String)]
    pub status: JobState,
    pub portal: String,
    pub portal_version: i32,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i32,
    pub output: Option<OutputInfo>,
    /// A signed link to the output that needs no bearer token (a browser or a phone can open
    /// it), valid for 24 hours from this response; `null` until the job is completed.
    pub download_url: Option<String>,
    pub ocr: Option<OcrInfo>,
    pub warnings: serde_json::Value,
    /// The output checked against its rule, one line per requirement; `null` until the job is
    /// completed.
    #[schema(value_type = Option<crate::openapi::CheckReport>)]
    pub report: Option<serde_json::Value>,
    pub correlation_id: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct JobRow {
    id: Uuid,
    state: JobState,
    slug: String,
    portal_schema_version: i32,
    error_code: Option<String>,
    error_message: Option<String>,
    attempts: i32,
    output_key: Option<String>,
    #[sqlx(flatten)]
    output: OutputColumns,
    warnings: serde_json::Value,
    ocr: Option<sqlx::types::Json<OcrInfo>>,
    report: Option<serde_json::Value>,
    output_deleted_at: Option<DateTime<Utc>>,
    correlation_id: String,
    request_fingerprint: String,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<JobRow> for JobView {
    fn from(r: JobRow) -> Self {
        let output = r.output.info(r.state);
        JobView {
            job_id: r.id,
            status: r.state,
            portal: r.slug,
            portal_version: r.portal_schema_version,
            error_code: r.error_code,
            error_message: r.error_message,
            attempts: r.attempts,
            output,
            download_url: None,
            ocr: r.ocr.map(|j| j.0),
            warnings: r.warnings,
            report: r.report.filter(|_| r.state == JobState::Completed),
            correlation_id: r.correlation_id,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

const SELECT_JOB: &str = "SELECT j.id, j.state, p.slug, j.portal_schema_version, j.error_code,
        j.error_message, j.attempts, j.output_key, j.output_bytes, j.output_width,
        j.output_height, j.output_dpi, j.output_format, j.output_filename, j.warnings, j.ocr,
        j.report, j.output_deleted_at,
        j.correlation_id, j.request_fingerprint, j.created_at, j.started_at, j.finished_at
    FROM jobs j JOIN portal_schemas p ON p.id = j.portal_schema_id";

/// A user's job; another user's job is indistinguishable from a missing one. (Row-level
/// security would hide it too: the `user_id` test is the first line of defence, not the only.)
async fn load_job(state: &AppState, user: Uuid, id: Uuid) -> Result<JobRow, ApiError> {
    find_owned(state, user, "j.id = $2", id)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn load_by_idempotency_key(
    state: &AppState,
    user: Uuid,
    key: &str,
) -> Result<Option<JobRow>, ApiError> {
    find_owned(state, user, "j.idempotency_key = $2", key.to_owned()).await
}

/// The job of `user` matching `filter` (a condition on `$2`), in a transaction scoped to them.
async fn find_owned<T>(
    state: &AppState,
    user: Uuid,
    filter: &'static str,
    arg: T,
) -> Result<Option<JobRow>, ApiError>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send,
{
    let mut tx = db::user_scope(&state.pool, user).await?;
    let row = sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!(
        "{SELECT_JOB} WHERE j.user_id = $1 AND {filter}"
    )))
    .bind(user)
    .bind(arg)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}

pub(crate) struct Upload {
    pub(crate) file: Bytes,
    pub(crate) filename: String,
    pub(crate) portal: String,
}

pub(crate) async fn read_upload(
    mut form: axum::extract::Multipart,
    limit: usize,
) -> Result<Upload, ApiError> {
    let too_large = |e: ApiError| match e {
        ApiError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge { limit },
        e => e,
    };
    let (mut file, mut filename, mut portal) = (None, String::new(), None);
    while let Some(field) = form.next_field().await.map_err(|e| too_large(e.into()))? {
        match field.name() {
            Some("file") => {
                filename = field.file_name().unwrap_or("upload").to_owned();
                file = Some(field.bytes().await.map_err(|e| too_large(e.into()))?);
            }
            Some("portal") => {
                portal = Some(field.text().await.map_err(|e| too_large(e.into()))?);
            }
            _ => {} // Unknown fields are ignored, as most form APIs do.
        }
    }
    let file =
        file.ok_or_else(|| ApiError::PayloadMissing("form field `file` is missing".into()))?;
    if file.is_empty() {
        return Err(ApiError::PayloadMissing(
            "the uploaded file is empty".into(),
        ));
    }
    if file.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let portal = portal
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::PayloadMissing("form field `portal` is missing".into()))?;
    Ok(Upload {
        file,
        filename,
        portal,
    })
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::PayloadInvalid(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn accepted(job_id: Uuid, status: JobState, correlation: &str, replay: bool) -> Response {
    let location = format!("/v1/jobs/{job_id}");
    super::accepted(Created { job_id, status }, &location, correlation, replay)
}

/// Submit an upload for a portal rule.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content = crate::openapi::JobForm, content_type = "multipart/form-data"),
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key; the same key returns the same job"),
           ("X-Correlation-ID" = Option<String>, Header, description = "caller's correlation id")),
    responses((status = 202, body = Created, headers(("Location" = String, description = "the job's URL"))),
              (status = 400, body = ErrorBody), (status = 402, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    User(user): User,
    Extension(CorrelationId(correlation)): Extension<CorrelationId>,
    headers: HeaderMap,
    Multipart(form): Multipart,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let upload = read_upload(form, state.settings.max_upload_bytes).await?;
    let sniffed = enqueue::sniff(&upload.file)?;
    let rule = db::active_portal(&state.pool, &upload.portal)
        .await?
        .ok_or_else(|| ApiError::UnknownPortal(upload.portal.clone()))?;
    let fingerprint = {
        let mut h = Sha256::new();
        h.update(rule.slug.as_bytes());
        h.update([0]);
        h.update(&upload.file);
        hex::encode(h.finalize())
    };

    // A repeat of an earlier request: answer with its job, enqueue nothing.
    let replay = |row: JobRow| {
        if row.request_fingerprint == fingerprint {
            Ok(accepted(row.id, row.state, &row.correlation_id, true))
        } else {
            Err(ApiError::IdempotencyKeyReused)
        }
    };
    if let Some(k) = &key
        && let Some(row) = load_by_idempotency_key(&state, user, k).await?
    {
        return replay(row);
    }

    let job_id = Uuid::new_v4();
    let task_id = ulid::Ulid::generate();
    let input_key = raw_key(user, job_id, Utc::now().timestamp(), &upload.filename)?;
    state.storage.put(&input_key, upload.file.clone()).await?;

    let upload_filename = sanitize_filename(&upload.filename);
    let outcome = enqueue(
        &state,
        user,
        &correlation,
        &NewJob {
            job_id,
            task_id,
            rule: &rule,
            key: key.as_deref(),
            fingerprint: &fingerprint,
            input_key: input_key.as_ref(),
            input_bytes: upload.file.len(),
            content_type: sniffed.content_type(),
            upload_filename: &upload_filename,
            batch: None,
        },
    )
    .await;
    match outcome {
        Ok(true) => {
            tracing::Span::current().record("job_id", tracing::field::display(job_id));
            tracing::info!(portal = %rule.slug, "job created");
            Ok(accepted(job_id, JobState::Pending, &correlation, false))
        }
        Ok(false) => {
            // A concurrent request with the same key won the race: ours is dropped whole.
            state.storage.delete(&input_key).await?;
            let k = key.as_deref().unwrap_or_default();
            let row = load_by_idempotency_key(&state, user, k)
                .await?
                .ok_or(ApiError::NotFound)?;
            replay(row)
        }
        Err(e) => {
            if let Err(cleanup) = state.storage.delete(&input_key).await {
                tracing::warn!(error = %cleanup, "could not remove the upload of a failed request");
            }
            Err(e)
        }
    }
}

/// Writes the job row, charges its credit and pushes its apalis task in one transaction.
/// Returns false when an idempotent twin already exists (nothing written).
async fn enqueue(
    state: &AppState,
    user: Uuid,
    correlation: &str,
    job: &NewJob<'_>,
) -> Result<bool, ApiError> {
    let mut tx = db::user_scope(&state.pool, user).await?;
    enqueue::admit(&mut tx, &state.settings, user, 1).await?;
    if !enqueue::insert_job(&mut tx, &state.settings, user, correlation, job).await? {
        return Ok(false);
    }
    enqueue::charge(&mut tx, &state.settings, user, &[job.job_id]).await?;
    enqueue::push_tasks(
        &mut tx,
        &state.settings,
        correlation,
        &[(job.job_id, job.task_id)],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WaitQuery {
    /// Hold the request up to this many seconds until the job is completed or failed; more
    /// than 60 counts as 60.
    #[serde(default, deserialize_with = "int64_seconds")]
    pub wait: Option<u64>,
}

/// A number of seconds as the document states it, a non-negative int64: a negative number, or
/// one past `i64::MAX`, is a malformed request (400), not a long wait.
fn int64_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<i64>::deserialize(d)?
        .map(|n| {
            u64::try_from(n)
                .map_err(|_| serde::de::Error::custom("`wait` must be 0 or more seconds"))
        })
        .transpose()
}

impl WaitQuery {
    /// How long the request may be held: `wait`, at most [`MAX_WAIT_SECS`], none by default.
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.wait.unwrap_or(0).min(MAX_WAIT_SECS))
    }
}

/// Read a job's status; `?wait=N` waits (LISTEN/NOTIFY driven) for it to finish.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = Uuid, Path), WaitQuery),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<Uuid>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<JobView>, ApiError> {
    let mut events = state.events.waiter(q.duration());
    loop {
        let row = load_job(&state, user, id).await?;
        if row.state.is_terminal() || events.expired() {
            let files_kept = row.output_deleted_at.is_none();
            let mut view = JobView::from(row);
            if view.output.is_some() && files_kept {
                view.download_url = Some(state.links.download_link(id, Utc::now(), DEFAULT_TTL));
            }
            return Ok(Json(view));
        }
        events.changed(id).await;
    }
}

/// Download the produced file.
#[utoipa::path(get, path = "/v1/jobs/{id}/output", tag = "jobs", params(("id" = Uuid, Path)),
    responses((status = 200, description = "the file", content(
                  (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"), (Vec<u8> = "application/pdf"))),
              (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn output(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let row = load_job(&state, user, id).await?;
    serve_output(&state, row).await
}

/// Download the produced file through a signed link (from `download_url`), without a token.
#[utoipa::path(get, path = "/v1/download/{id}", tag = "jobs",
    params(("id" = Uuid, Path), ("exp" = i64, Query, description = "expiry, unix seconds"),
           ("sig" = String, Query, description = "HMAC-SHA256 signature")),
    responses((status = 200, description = "the file", content(
                  (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"), (Vec<u8> = "application/pdf"))),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 410, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    link: Result<Query<LinkQuery>, ApiError>,
) -> Result<Response, ApiError> {
    let mut tx = open_signed_link(&state, link, &LinkSigner::download_path(id), id).await?;
    let row =
        sqlx::query_as::<_, JobRow>(sqlx::AssertSqlSafe(format!("{SELECT_JOB} WHERE j.id = $1")))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    serve_output(&state, row).await
}

/// A transaction that may read the one job or batch `id` whose signed link (for `path`) the
/// request carries, once the link is verified: the link names its owner's row only by id.
pub(crate) async fn open_signed_link(
    state: &AppState,
    link: Result<Query<LinkQuery>, ApiError>,
    path: &str,
    id: Uuid,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ApiError> {
    let Query(link) = link.map_err(|_| {
        ApiError::LinkInvalid("a download link needs its `exp` and `sig` parameters".into())
    })?;
    state
        .links
        .verify(path, &link, Utc::now())
        .map_err(|e| ApiError::LinkInvalid(e.to_string()))?;
    Ok(db::signed_link_scope(&state.pool, id).await?)
}

/// A stored (decrypted) object as a download named `filename`.
pub(crate) async fn stored_attachment(
    state: &AppState,
    key: &str,
    content_type: &'static str,
    filename: &str,
) -> Result<Response, ApiError> {
    let path =
        object_store::path::Path::parse(key).map_err(|e| ApiError::internal("stored key", e))?;
    let bytes = state.storage.get(&path).await?;
    let mut resp = (StatusCode::OK, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// The job's output file with its content type and portal file name.
async fn serve_output(state: &AppState, row: JobRow) -> Result<Response, ApiError> {
    let id = row.id;
    if row.output_deleted_at.is_some() {
        return Err(ApiError::OutputExpired);
    }
    let (Some(key), JobState::Completed) = (row.output_key.as_deref(), row.state) else {
        return Err(ApiError::NotFound);
    };
    let content_type = row
        .output
        .output_format
        .as_deref()
        .and_then(OutputFormat::from_extension)
        .map_or("application/octet-stream", OutputFormat::content_type);
    let filename = row
        .output
        .output_filename
        .unwrap_or_else(|| format!("{id}"));
    stored_attachment(state, key, content_type, &filename).await
}
