//! `/v1/batches`: a set of uploads for one portal application (photo, signature, a document),
//! each with its portal rule. One transaction creates the batch and one job per file (credits,
//! rate limit and tasks as for single jobs); when every job has finished, a worker packages the
//! outputs as one ZIP with the portals' file names and a manifest of what failed.
//!
//! All SQL here takes a `&mut PgConnection`, and every request runs it in a transaction that
//! names its user (`db::user_scope`) or the one batch a verified signed link names
//! (`db::signed_link_scope`), so row-level security confines it to that user's rows too.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use rythmiq_shared::db;
use rythmiq_shared::domain::{BatchState, JobState, PortalRule};
use rythmiq_shared::signing::{DEFAULT_TTL, LinkQuery, LinkSigner};
use rythmiq_shared::storage::{raw_key, sanitize_filename};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::AppState;
use crate::auth::User;
use crate::enqueue::{self, NewJob};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Multipart, Path, Query};
use crate::observe::CorrelationId;
use crate::routes::jobs::{
    OutputColumns, OutputInfo, WaitQuery, idempotency_key, open_signed_link, stored_attachment,
};

/// One file of a new batch, in `POST /v1/batches`' answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchJobCreated {
    pub job_id: Uuid,
    pub portal: String,
    /// The upload's file name as stored (reduced to `[A-Za-z0-9._-]`), to tell the files apart.
    pub filename: Option<String>,
    #[schema(value_type = String)]
    pub status: JobState,
}

/// Response to `POST /v1/batches`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "batch_id": "5b0c2d7e-8f41-4a63-b1d9-2e7f4c6a8b13", "status": "processing",
    "jobs": [{"job_id": "0f8e3a52-4c1d-4b8e-9a57-3d2f6c1b7e90", "portal": "neet-ug-2026-photo",
              "filename": "photo.jpg", "status": "pending"}]}))]
pub struct BatchCreated {
    pub batch_id: Uuid,
    /// `processing`.
    #[schema(value_type = String)]
    pub status: BatchState,
    /// One job per file, in the order of the request's `file` parts.
    pub jobs: Vec<BatchJobCreated>,
}

/// One file of a batch, in `GET /v1/batches/{id}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchJobView {
    pub job_id: Uuid,
    /// Position of the file in the request (0-based).
    pub index: i32,
    pub portal: String,
    pub filename: Option<String>,
    #[schema(value_type = String)]
    pub status: JobState,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub output: Option<OutputInfo>,
}

/// The ZIP of a completed batch.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageInfo {
    pub bytes: i64,
    /// Output files in the ZIP (besides `manifest.json` and `README.txt`).
    pub files: i32,
}

/// Response to `GET /v1/batches/{id}`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "batch_id": "5b0c2d7e-8f41-4a63-b1d9-2e7f4c6a8b13", "status": "completed",
    "jobs": [{"job_id": "0f8e3a52-4c1d-4b8e-9a57-3d2f6c1b7e90", "index": 0,
              "portal": "neet-ug-2026-photo", "filename": "photo.jpg", "status": "completed",
              "error_code": null, "error_message": null,
              "output": {"bytes": 24817, "width": 200, "height": 230, "dpi": 200,
                         "format": "jpg", "filename": "neet-ug-2026-photo.jpg"}}],
    "succeeded": 1, "failed": 0,
    "download_url": "/v1/download/batches/5b0c2d7e-8f41-4a63-b1d9-2e7f4c6a8b13?exp=1777716000&sig=…",
    "package": {"bytes": 26120, "files": 1}, "error_code": null, "error_message": null,
    "correlation_id": "c0ffee-42", "created_at": "2026-05-01T10:00:00Z",
    "finished_at": "2026-05-01T10:00:02Z"}))]
pub struct BatchView {
    pub batch_id: Uuid,
    /// `processing`, `packaging`, `completed` or `failed`.
    #[schema(value_type = String)]
    pub status: BatchState,
    pub jobs: Vec<BatchJobView>,
    /// Jobs completed so far.
    pub succeeded: usize,
    /// Jobs failed for good so far.
    pub failed: usize,
    /// A signed link to the ZIP that needs no bearer token, valid for 24 hours from this
    /// response; `null` until the batch is completed and after the package's retention.
    pub download_url: Option<String>,
    pub package: Option<PackageInfo>,
    /// Why the batch failed: `ALL_FILES_FAILED` or `PACKAGING_FAILED`.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub correlation_id: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct BatchRow {
    id: Uuid,
    state: BatchState,
    correlation_id: String,
    request_fingerprint: String,
    zip_key: Option<String>,
    zip_bytes: Option<i64>,
    zip_files: Option<i32>,
    zip_deleted_at: Option<DateTime<Utc>>,
    error_code: Option<String>,
    error_message: Option<String>,
    created_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl BatchRow {
    /// Whether the ZIP exists and may be downloaded.
    fn package_available(&self) -> bool {
        self.state == BatchState::Completed
            && self.zip_key.is_some()
            && self.zip_deleted_at.is_none()
    }
}

#[derive(FromRow)]
struct BatchJobRow {
    id: Uuid,
    batch_index: i32,
    slug: String,
    upload_filename: Option<String>,
    state: JobState,
    error_code: Option<String>,
    error_message: Option<String>,
    #[sqlx(flatten)]
    output: OutputColumns,
}

impl From<BatchJobRow> for BatchJobView {
    fn from(r: BatchJobRow) -> Self {
        let output = r.output.info(r.state);
        BatchJobView {
            job_id: r.id,
            index: r.batch_index,
            portal: r.slug,
            filename: r.upload_filename,
            status: r.state,
            error_code: r.error_code,
            error_message: r.error_message,
            output,
        }
    }
}

// ---- SQL: every statement of the batch API, each on the caller's connection ----

const SELECT_BATCH: &str = "SELECT id, state, correlation_id, request_fingerprint, zip_key,
        zip_bytes, zip_files, zip_deleted_at, error_code, error_message, created_at, finished_at
    FROM batches";

/// A user's batch (`user` = None: any user's, for a signed link that proved itself).
async fn load_batch(
    conn: &mut PgConnection,
    user: Option<Uuid>,
    id: Uuid,
) -> Result<Option<BatchRow>, ApiError> {
    Ok(sqlx::query_as::<_, BatchRow>(sqlx::AssertSqlSafe(format!(
        "{SELECT_BATCH} WHERE id = $1 AND ($2::uuid IS NULL OR user_id = $2)"
    )))
    .bind(id)
    .bind(user)
    .fetch_optional(conn)
    .await?)
}

async fn load_batch_by_key(
    conn: &mut PgConnection,
    user: Uuid,
    key: &str,
) -> Result<Option<BatchRow>, ApiError> {
    Ok(sqlx::query_as::<_, BatchRow>(sqlx::AssertSqlSafe(format!(
        "{SELECT_BATCH} WHERE user_id = $1 AND idempotency_key = $2"
    )))
    .bind(user)
    .bind(key)
    .fetch_optional(conn)
    .await?)
}

/// A batch's jobs in request order.
async fn load_batch_jobs(
    conn: &mut PgConnection,
    batch: Uuid,
) -> Result<Vec<BatchJobRow>, ApiError> {
    Ok(sqlx::query_as::<_, BatchJobRow>(
        "SELECT j.id, j.batch_index, p.slug, j.upload_filename, j.state, j.error_code,
                j.error_message, j.output_bytes, j.output_width, j.output_height, j.output_dpi,
                j.output_format, j.output_filename
         FROM jobs j JOIN portal_schemas p ON p.id = j.portal_schema_id
         WHERE j.batch_id = $1 ORDER BY j.batch_index",
    )
    .bind(batch)
    .fetch_all(conn)
    .await?)
}

/// Writes the batch row. False when an idempotent twin (same user and key) already exists.
async fn insert_batch(
    conn: &mut PgConnection,
    batch: &NewBatch<'_>,
    user: Uuid,
    correlation: &str,
) -> Result<bool, ApiError> {
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO batches (id, user_id, correlation_id, idempotency_key, request_fingerprint,
                              file_count)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING id",
    )
    .bind(batch.id)
    .bind(user)
    .bind(correlation)
    .bind(batch.key)
    .bind(batch.fingerprint)
    .bind(i32::try_from(batch.jobs.len()).unwrap_or(i32::MAX))
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// The batch row, its jobs, their credits and their tasks, in one transaction. Returns false
/// when an idempotent twin already exists (nothing written).
async fn enqueue_batch(
    state: &AppState,
    user: Uuid,
    correlation: &str,
    batch: &NewBatch<'_>,
) -> Result<bool, ApiError> {
    let settings = &state.settings;
    let mut tx = db::user_scope(&state.pool, user).await?;
    enqueue::admit(&mut tx, settings, user, batch.jobs.len()).await?;
    if !insert_batch(&mut tx, batch, user, correlation).await? {
        return Ok(false);
    }
    for job in &batch.jobs {
        if !enqueue::insert_job(&mut tx, settings, user, correlation, job).await? {
            // A batch's jobs carry no key of their own, so they cannot conflict.
            return Err(ApiError::bug("a batch job conflicted"));
        }
    }
    let ids: Vec<Uuid> = batch.jobs.iter().map(|j| j.job_id).collect();
    enqueue::charge(&mut tx, settings, user, &ids).await?;
    let tasks: Vec<(Uuid, ulid::Ulid)> = batch.jobs.iter().map(|j| (j.job_id, j.task_id)).collect();
    enqueue::push_tasks(&mut tx, settings, correlation, &tasks).await?;
    tx.commit().await?;
    Ok(true)
}

// ---- the request ----

struct NewBatch<'a> {
    id: Uuid,
    key: Option<&'a str>,
    fingerprint: &'a str,
    jobs: Vec<NewJob<'a>>,
}

struct FilePart {
    file: Bytes,
    filename: String,
}

/// Reads the form: `file` and `portal` parts in any interleaving, the n-th portal for the n-th
/// file. Stops as soon as a file passes the per-file limit or the batch passes its file count.
async fn read_form(
    mut form: axum::extract::Multipart,
    max_files: usize,
    limit: usize,
) -> Result<(Vec<FilePart>, Vec<String>), ApiError> {
    let too_large = |e: ApiError| match e {
        ApiError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge { limit },
        e => e,
    };
    let (mut files, mut portals) = (Vec::<FilePart>::new(), Vec::<String>::new());
    while let Some(mut field) = form.next_field().await.map_err(|e| too_large(e.into()))? {
        match field.name() {
            Some("file") => {
                let index = files.len();
                if index >= max_files {
                    return Err(ApiError::TooManyFiles { limit: max_files });
                }
                let filename = field.file_name().unwrap_or("upload").to_owned();
                let mut buf = BytesMut::new();
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| too_large(e.into()).in_file(index))?
                {
                    if buf.len() + chunk.len() > limit {
                        return Err(ApiError::PayloadTooLarge { limit }.in_file(index));
                    }
                    buf.extend_from_slice(&chunk);
                }
                files.push(FilePart {
                    file: buf.freeze(),
                    filename,
                });
            }
            Some("portal") => {
                if portals.len() >= max_files {
                    return Err(ApiError::TooManyFiles { limit: max_files });
                }
                let text = field.text().await.map_err(|e| too_large(e.into()))?;
                portals.push(text.trim().to_owned());
            }
            _ => {} // Unknown fields are ignored, as for single jobs.
        }
    }
    if files.is_empty() {
        return Err(ApiError::PayloadMissing(
            "form field `file` is missing: a batch needs at least one file".into(),
        ));
    }
    if files.len() != portals.len() {
        return Err(ApiError::PayloadMissing(format!(
            "{} `file` parts but {} `portal` parts: every file needs its portal (the n-th \
             `portal` goes with the n-th `file`)",
            files.len(),
            portals.len()
        )));
    }
    Ok((files, portals))
}

/// SHA-256 over the `(portal slug, file)` pairs in order, each file length-prefixed: what an
/// idempotent repeat must match.
fn fingerprint(pairs: &[(&PortalRule, &FilePart)]) -> String {
    let mut h = Sha256::new();
    for (rule, part) in pairs {
        h.update(rule.slug.as_bytes());
        h.update([0]);
        h.update((part.file.len() as u64).to_be_bytes());
        h.update(&part.file);
    }
    hex::encode(h.finalize())
}

fn created_view(id: Uuid, status: BatchState, jobs: Vec<BatchJobCreated>) -> BatchCreated {
    BatchCreated {
        batch_id: id,
        status,
        jobs,
    }
}

fn accepted(body: BatchCreated, correlation: &str, replay: bool) -> Response {
    let location = format!("/v1/batches/{}", body.batch_id);
    super::accepted(body, &location, correlation, replay)
}

/// The batch an earlier request with this Idempotency-Key created, if any.
async fn find_by_key(
    state: &AppState,
    user: Uuid,
    key: &str,
) -> Result<Option<BatchRow>, ApiError> {
    let mut tx = db::user_scope(&state.pool, user).await?;
    let row = load_batch_by_key(&mut tx, user, key).await?;
    tx.commit().await?;
    Ok(row)
}

/// The answer to a repeat of an earlier request: its batch as it is now.
async fn replay(
    state: &AppState,
    user: Uuid,
    row: BatchRow,
    fingerprint: &str,
) -> Result<Response, ApiError> {
    if row.request_fingerprint != fingerprint {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let mut tx = db::user_scope(&state.pool, user).await?;
    let jobs = load_batch_jobs(&mut tx, row.id).await?;
    tx.commit().await?;
    let jobs = jobs
        .into_iter()
        .map(|j| BatchJobCreated {
            job_id: j.id,
            portal: j.slug,
            filename: j.upload_filename,
            status: j.state,
        })
        .collect();
    Ok(accepted(
        created_view(row.id, row.state, jobs),
        &row.correlation_id,
        true,
    ))
}

/// Submit several uploads, each for its portal rule, as one batch.
#[utoipa::path(post, path = "/v1/batches", tag = "batches",
    request_body(content = crate::openapi::BatchForm, content_type = "multipart/form-data",
        description = "repeated `file` parts, each with a `portal` part (a schema slug): the n-th \
                       `portal` goes with the n-th `file`; at most RYTHMIQ_MAX_BATCH_FILES files"),
    params(("Idempotency-Key" = Option<String>, Header, description = "repeat-safe key; the same key returns the same batch"),
           ("X-Correlation-ID" = Option<String>, Header, description = "caller's correlation id")),
    responses((status = 202, body = BatchCreated, headers(("Location" = String, description = "the batch's URL"))),
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
    let settings = &state.settings;
    let (files, portals) =
        read_form(form, settings.max_batch_files, settings.max_upload_bytes).await?;

    // Everything is checked before anything is stored.
    let mut sniffed = Vec::with_capacity(files.len());
    for (i, part) in files.iter().enumerate() {
        if part.file.is_empty() {
            return Err(ApiError::PayloadMissing("the uploaded file is empty".into()).in_file(i));
        }
        sniffed.push(enqueue::sniff(&part.file).map_err(|e| e.in_file(i))?);
    }
    let mut rules: HashMap<&str, PortalRule> = HashMap::new();
    {
        let mut conn = state.pool.acquire().await?;
        for (i, slug) in portals.iter().enumerate() {
            if slug.is_empty() {
                return Err(
                    ApiError::PayloadMissing("form field `portal` is empty".into()).in_file(i),
                );
            }
            if !rules.contains_key(slug.as_str()) {
                let rule = db::active_portal(&mut *conn, slug)
                    .await?
                    .ok_or_else(|| ApiError::UnknownPortal(slug.clone()).in_file(i))?;
                rules.insert(slug, rule);
            }
        }
    }
    let mut pairs = Vec::with_capacity(files.len());
    for (slug, part) in portals.iter().zip(&files) {
        let rule = rules
            .get(slug.as_str())
            .ok_or_else(|| ApiError::bug("portal rule lost"))?;
        pairs.push((rule, part));
    }
    let fingerprint = fingerprint(&pairs);

    // A repeat of an earlier request: answer with its batch, enqueue nothing.
    if let Some(k) = &key
        && let Some(row) = find_by_key(&state, user, k).await?
    {
        return replay(&state, user, row, &fingerprint).await;
    }

    let batch_id = Uuid::new_v4();
    let now = Utc::now().timestamp();
    let mut stored = Vec::with_capacity(files.len());
    let mut uploads = Vec::with_capacity(files.len());
    let mut names = Vec::with_capacity(files.len());
    for (rule, part) in &pairs {
        let job_id = Uuid::new_v4();
        names.push(sanitize_filename(&part.filename));
        let input_key = raw_key(user, job_id, now, &part.filename)?;
        if let Err(e) = state.storage.put(&input_key, part.file.clone()).await {
            remove_uploads(&state, &uploads).await;
            return Err(e.into());
        }
        uploads.push(input_key.clone());
        stored.push((job_id, input_key, *rule));
    }
    let mut jobs = Vec::with_capacity(stored.len());
    for (i, ((job_id, input_key, rule), part)) in stored.iter().zip(&files).enumerate() {
        jobs.push(NewJob {
            job_id: *job_id,
            task_id: ulid::Ulid::generate(),
            rule,
            key: None,
            fingerprint: &fingerprint,
            input_key: input_key.as_ref(),
            input_bytes: part.file.len(),
            content_type: sniffed[i].content_type(),
            upload_filename: &names[i],
            batch: Some((batch_id, i32::try_from(i).unwrap_or(i32::MAX))),
        });
    }
    let batch = NewBatch {
        id: batch_id,
        key: key.as_deref(),
        fingerprint: &fingerprint,
        jobs,
    };
    let outcome = enqueue_batch(&state, user, &correlation, &batch).await;
    match outcome {
        Ok(true) => {
            tracing::info!(batch_id = %batch_id, files = batch.jobs.len(), "batch created");
            let jobs = batch
                .jobs
                .iter()
                .map(|j| BatchJobCreated {
                    job_id: j.job_id,
                    portal: j.rule.slug.clone(),
                    filename: Some(j.upload_filename.to_owned()),
                    status: JobState::Pending,
                })
                .collect();
            Ok(accepted(
                created_view(batch_id, BatchState::Processing, jobs),
                &correlation,
                false,
            ))
        }
        Ok(false) => {
            // A concurrent request with the same key won the race: ours is dropped whole.
            remove_uploads(&state, &uploads).await;
            let k = key.as_deref().unwrap_or_default();
            let row = find_by_key(&state, user, k)
                .await?
                .ok_or(ApiError::NotFound)?;
            replay(&state, user, row, &fingerprint).await
        }
        Err(e) => {
            remove_uploads(&state, &uploads).await;
            Err(e)
        }
    }
}

/// Removes the uploads of a request that was refused or lost a race.
async fn remove_uploads(state: &AppState, keys: &[object_store::path::Path]) {
    for key in keys {
        if let Err(e) = state.storage.delete(key).await {
            tracing::warn!(error = %e, "could not remove the upload of a failed request");
        }
    }
}

/// Read a batch: every file's status, and once packaged a link to the ZIP. `?wait=N` waits
/// (LISTEN/NOTIFY driven) until the batch is completed or failed.
#[utoipa::path(get, path = "/v1/batches/{id}", tag = "batches", params(("id" = Uuid, Path), WaitQuery),
    responses((status = 200, body = BatchView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<Uuid>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<BatchView>, ApiError> {
    let mut events = state.events.waiter(q.duration());
    loop {
        let mut tx = db::user_scope(&state.pool, user).await?;
        let row = load_batch(&mut tx, Some(user), id)
            .await?
            .ok_or(ApiError::NotFound)?;
        if row.state.is_terminal() || events.expired() {
            let jobs = load_batch_jobs(&mut tx, id).await?;
            tx.commit().await?;
            return Ok(Json(view(&state, row, jobs)));
        }
        // No connection is held while waiting.
        tx.commit().await?;
        events.changed(id).await;
    }
}

fn view(state: &AppState, row: BatchRow, jobs: Vec<BatchJobRow>) -> BatchView {
    let jobs: Vec<BatchJobView> = jobs.into_iter().map(BatchJobView::from).collect();
    let count = |s: JobState| jobs.iter().filter(|j| j.status == s).count();
    let download_url = row.package_available().then(|| {
        state
            .links
            .batch_download_link(row.id, Utc::now(), DEFAULT_TTL)
    });
    let package = match (row.state, row.zip_bytes, row.zip_files) {
        (BatchState::Completed, Some(bytes), Some(files)) => Some(PackageInfo { bytes, files }),
        _ => None,
    };
    BatchView {
        batch_id: row.id,
        status: row.state,
        succeeded: count(JobState::Completed),
        failed: count(JobState::Failed),
        jobs,
        download_url,
        package,
        error_code: row.error_code,
        error_message: row.error_message,
        correlation_id: row.correlation_id,
        created_at: row.created_at,
        finished_at: row.finished_at,
    }
}

/// Download the batch's ZIP.
#[utoipa::path(get, path = "/v1/batches/{id}/output", tag = "batches", params(("id" = Uuid, Path)),
    responses((status = 200, description = "the ZIP", content_type = "application/zip"),
              (status = 404, body = ErrorBody), (status = 410, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn output(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let mut tx = db::user_scope(&state.pool, user).await?;
    let row = load_batch(&mut tx, Some(user), id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    serve_package(&state, row).await
}

/// Download the batch's ZIP through a signed link (from `download_url`), without a token.
#[utoipa::path(get, path = "/v1/download/batches/{id}", tag = "batches",
    params(("id" = Uuid, Path), ("exp" = i64, Query, description = "expiry, unix seconds"),
           ("sig" = String, Query, description = "HMAC-SHA256 signature")),
    responses((status = 200, description = "the ZIP", content_type = "application/zip"),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 410, body = ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    link: Result<Query<LinkQuery>, ApiError>,
) -> Result<Response, ApiError> {
    let mut tx = open_signed_link(&state, link, &LinkSigner::batch_download_path(id), id).await?;
    let row = load_batch(&mut tx, None, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    serve_package(&state, row).await
}

/// The batch's ZIP, decrypted, as an attachment.
async fn serve_package(state: &AppState, row: BatchRow) -> Result<Response, ApiError> {
    if row.zip_deleted_at.is_some() {
        return Err(ApiError::OutputExpired);
    }
    let (Some(key), true) = (row.zip_key.as_deref(), row.package_available()) else {
        return Err(ApiError::NotFound);
    };
    let filename = format!("batch_{}.zip", row.id);
    stored_attachment(state, key, "application/zip", &filename).await
}
