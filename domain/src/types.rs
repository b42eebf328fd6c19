//! Domain types shared by the API, the workers and the pipeline: portal rules, job states, error
//! codes and the task payload that travels through the queue.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What kind of upload a portal rule describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "lowercase"))]
pub enum DocumentKind {
    Photo,
    Signature,
    Document,
}

/// The file format a portal accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "lowercase"))]
pub enum OutputFormat {
    Jpeg,
    Png,
    Pdf,
}

impl OutputFormat {
    /// The MIME type of a file in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Pdf => "application/pdf",
        }
    }

    /// The format a stored extension (as written by [`OutputFormat::extension`]) names.
    pub fn from_extension(ext: &str) -> Option<Self> {
        [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Pdf]
            .into_iter()
            .find(|f| f.extension() == ext)
    }

    /// The file extension, without a dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Pdf => "pdf",
        }
    }
}

/// What a rule asks of the text in an upload, checked by OCR (`text_check` in a rule file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "snake_case"))]
pub enum TextCheck {
    /// Nothing is asked of the text.
    #[default]
    None,
    /// Handwritten text must be there, and in English (a declaration).
    English,
    /// Not written in capital letters (IBPS signatures).
    NoCapitals,
}

/// What a portal asks of an upload: the values jobs are fitted to and verified against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub slug: String,
    pub name: String,
    pub kind: DocumentKind,
    pub width: i32,
    pub height: i32,
    pub dpi: i32,
    pub format: OutputFormat,
    /// Smallest accepted size in kilobytes; the file must hold at least `min_kb × 1024` bytes.
    pub min_kb: i32,
    /// Largest accepted size in kilobytes; the file must hold at most `max_kb × 1000` bytes.
    pub max_kb: i32,
    pub filename_pattern: String,
    /// Background rule, e.g. `white`, `light` or `any`.
    pub background: String,
    /// What the text OCR reads must be (`none` when the key is absent).
    #[serde(default)]
    #[cfg_attr(feature = "sqlx", sqlx(default))]
    pub text_check: TextCheck,
    /// Where the face must sit in a photo (the file's `[face]` table); `None`: the rule says
    /// nothing about the face, and the photo is cropped around its most salient part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "sqlx", sqlx(json(nullable)))]
    pub face: Option<FaceSpec>,
}

/// A photo rule's framing: bands as fractions of the output's height (or width), each
/// `[lowest, highest]`, as ID-photo specifications state them (ICAO Doc 9303 Part 3,
/// ISO/IEC 19794-5).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaceSpec {
    /// Crown-to-chin height over the image height.
    pub head_height: [f64; 2],
    /// Height of the line through the eyes above the bottom edge, over the image height.
    pub eye_line: [f64; 2],
    /// Largest horizontal distance of the face's centre line from the image's, over the width.
    pub centre_tolerance: f64,
}

impl FaceSpec {
    /// Whether the bands are usable: within 0–1, lowest ≤ highest, and a tolerance below ½.
    pub fn is_valid(&self) -> bool {
        let band = |[lo, hi]: [f64; 2]| 0.0 < lo && lo <= hi && hi <= 1.0;
        band(self.head_height) && band(self.eye_line) && (0.0..0.5).contains(&self.centre_tolerance)
    }
}

/// One version of a portal's upload rule, as stored in `portal_schemas`: a [`RuleSpec`] with
/// its row id and version. It reads as its spec (`rule.width`), and serialises flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::FromRow))]
pub struct PortalRule {
    pub id: Uuid,
    pub version: i32,
    #[serde(flatten)]
    #[cfg_attr(feature = "sqlx", sqlx(flatten))]
    pub spec: RuleSpec,
}

impl std::ops::Deref for PortalRule {
    type Target = RuleSpec;
    fn deref(&self) -> &RuleSpec {
        &self.spec
    }
}

impl RuleSpec {
    /// The byte window that satisfies both readings of a kilobyte (1,000 and 1,024 bytes).
    pub fn byte_window(&self) -> (u64, u64) {
        let min = u64::try_from(self.min_kb.max(0)).unwrap_or(0) * 1024;
        let max = u64::try_from(self.max_kb.max(0)).unwrap_or(0) * 1000;
        (min, max)
    }
}

/// Job lifecycle states, mirrored by the `jobs.state` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "lowercase"))]
pub enum JobState {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed)
    }
}

/// Batch lifecycle states, mirrored by the `batches.state` column: `processing` while any of its
/// jobs is unfinished, `packaging` while a worker builds the ZIP, then `completed` (a package
/// with at least one file) or `failed` (no file succeeded, or packaging kept failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "sqlx", derive(sqlx::Type))]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "sqlx", sqlx(type_name = "text", rename_all = "lowercase"))]
pub enum BatchState {
    Processing,
    Packaging,
    Completed,
    Failed,
}

impl BatchState {
    /// Whether the batch will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, BatchState::Completed | BatchState::Failed)
    }
}

/// The error codes (the README's tables). Every failure a user can see maps to exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    PayloadMissing,
    PayloadInvalid,
    FetchFailed,
    FetchTimeout,
    DecodeFailed,
    OcrFailed,
    OcrTimeout,
    SchemaFailed,
    SizeExceeded,
    UploadFailed,
    /// The worker running the job died (crash, OOM kill) more often than the attempt limit allows.
    WorkerLost,
    /// A fault of ours that is not one of the above (database, bug); retried.
    Internal,
    /// A batch's package could not be built or stored (after its retries), or one completed
    /// output could not be read back into it.
    PackagingFailed,
    /// Every file of a batch failed: there is nothing to package.
    AllFilesFailed,
    /// A photo rule that frames by the face found no face in the upload.
    FaceNotFound,
    /// A photo rule that frames by the face found two or more faces of similar size.
    MultipleFaces,
}

impl ErrorCode {
    /// All codes, for documentation and tests.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::PayloadMissing,
        ErrorCode::PayloadInvalid,
        ErrorCode::FetchFailed,
        ErrorCode::FetchTimeout,
        ErrorCode::DecodeFailed,
        ErrorCode::OcrFailed,
        ErrorCode::OcrTimeout,
        ErrorCode::SchemaFailed,
        ErrorCode::SizeExceeded,
        ErrorCode::UploadFailed,
        ErrorCode::WorkerLost,
        ErrorCode::Internal,
        ErrorCode::PackagingFailed,
        ErrorCode::AllFilesFailed,
        ErrorCode::FaceNotFound,
        ErrorCode::MultipleFaces,
    ];

    /// The code as stored and shown, e.g. `DECODE_FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::PayloadMissing => "PAYLOAD_MISSING",
            ErrorCode::PayloadInvalid => "PAYLOAD_INVALID",
            ErrorCode::FetchFailed => "FETCH_FAILED",
            ErrorCode::FetchTimeout => "FETCH_TIMEOUT",
            ErrorCode::DecodeFailed => "DECODE_FAILED",
            ErrorCode::OcrFailed => "OCR_FAILED",
            ErrorCode::OcrTimeout => "OCR_TIMEOUT",
            ErrorCode::SchemaFailed => "SCHEMA_FAILED",
            ErrorCode::SizeExceeded => "SIZE_EXCEEDED",
            ErrorCode::UploadFailed => "UPLOAD_FAILED",
            ErrorCode::WorkerLost => "WORKER_LOST",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::PackagingFailed => "PACKAGING_FAILED",
            ErrorCode::AllFilesFailed => "ALL_FILES_FAILED",
            ErrorCode::FaceNotFound => "FACE_NOT_FOUND",
            ErrorCode::MultipleFaces => "MULTIPLE_FACES",
        }
    }

    /// Whether the queue should try the job again (the README's error-code table); for
    /// `PACKAGING_FAILED`, whether the batch's packaging is tried again.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::FetchTimeout
                | ErrorCode::OcrTimeout
                | ErrorCode::UploadFailed
                | ErrorCode::Internal
                | ErrorCode::PackagingFailed
        )
    }

    /// Whether a job that fails for good with this code gets its credit back: the failure was
    /// ours (a retryable fault that outlasted its attempts, a lost worker), not the upload's.
    /// The batch codes never fail a job (its output stays downloadable on its own).
    pub fn refundable(self) -> bool {
        matches!(
            self,
            ErrorCode::FetchTimeout
                | ErrorCode::OcrTimeout
                | ErrorCode::UploadFailed
                | ErrorCode::Internal
                | ErrorCode::WorkerLost
        )
    }

    /// The pipeline stage the code belongs to.
    pub fn stage(self) -> &'static str {
        match self {
            ErrorCode::PayloadMissing | ErrorCode::PayloadInvalid => "init",
            ErrorCode::FetchFailed | ErrorCode::FetchTimeout => "fetch",
            ErrorCode::DecodeFailed => "decode",
            ErrorCode::OcrFailed | ErrorCode::OcrTimeout => "ocr",
            ErrorCode::SchemaFailed
            | ErrorCode::SizeExceeded
            | ErrorCode::FaceNotFound
            | ErrorCode::MultipleFaces => "schema",
            ErrorCode::UploadFailed => "upload",
            ErrorCode::WorkerLost | ErrorCode::Internal => "worker",
            ErrorCode::PackagingFailed | ErrorCode::AllFilesFailed => "package",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The task payload pushed into the apalis queue with each job. The job row holds the truth; the
/// payload only names it, so a task can never disagree with the row it points to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobTask {
    pub job_id: Uuid,
    pub correlation_id: String,
    /// W3C trace context of the request that enqueued the job; the worker continues that trace
    /// (first attempt) or links to it (retries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}
