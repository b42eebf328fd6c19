//! Object storage through `object_store`: the local filesystem (the embedded default) or any
//! S3-compatible service (AWS S3, DigitalOcean Spaces, MinIO…), chosen by [`Backend`]. Every
//! object is sealed by [`KeyRing`](crate::crypto::KeyRing) before it leaves the process, so
//! neither the store nor a staging file ever holds plaintext.
//!
//! Keys follow one layout and are built by one function, [`ObjectKey::build`]:
//!
//! ```text
//! raw/{user_id}/{job_id}/{unix_ts}_{filename}.enc        an upload
//! master/{user_id}/{document_id}/{document_id}.enc       a processed master document
//! output/{user_id}/{job_id}/{unix_ts}_{filename}.enc     a delivered file
//! output/{user_id}/{batch_id}/{unix_ts}_output.zip.enc   a batch's package (ZIP)
//! ```
//!
//! Ids must be UUIDv4 and the one free-form part, the filename, is reduced to at most 128
//! characters of `[A-Za-z0-9._-]`, so a key can never traverse, hold a null byte or start with
//! `/`. The job (or document) id in the key is also the id the object's ciphertext is bound to.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::config::StorageSettings;
use crate::crypto::{CryptoError, KeyRing};

/// Longest filename part kept in a key.
pub const MAX_FILENAME: usize = 128;
/// File name part of a batch package's key (`{timestamp}_output.zip.enc`).
pub const BATCH_ZIP_NAME: &str = "output.zip";
/// Suffix of every stored (encrypted) object.
const SUFFIX: &str = ".enc";

/// Storage failures, in the classes the worker maps to its error codes: [`NotFound`] and
/// [`Rejected`] are final (`FETCH_FAILED`), [`Timeout`] and [`Unavailable`] are worth a retry
/// (`FETCH_TIMEOUT`, `UPLOAD_FAILED`), [`Crypto`] means the stored bytes are not what was written
/// (tampered, another job's, or a key missing from the ring) and is final.
///
/// [`NotFound`]: StorageError::NotFound
/// [`Rejected`]: StorageError::Rejected
/// [`Timeout`]: StorageError::Timeout
/// [`Unavailable`]: StorageError::Unavailable
/// [`Crypto`]: StorageError::Crypto
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage key: {0}")]
    InvalidKey(String),
    #[error("object not found: {key}")]
    NotFound { key: String },
    #[error("object storage did not answer within {0:?}")]
    Timeout(Duration),
    #[error("object storage unavailable: {0}")]
    Unavailable(#[source] object_store::Error),
    #[error("object storage refused the request: {0}")]
    Rejected(#[source] object_store::Error),
    #[error("stored object cannot be opened: {0}")]
    Crypto(#[from] CryptoError),
    #[error("storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// Whether trying again later may succeed (timeouts, network and server errors).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout(_) | Self::Unavailable(_))
    }

    fn from_store(e: object_store::Error) -> Self {
        use object_store::Error as E;
        match e {
            E::NotFound { path, .. } => Self::NotFound { key: path },
            // Permanent: retrying the same request gets the same answer.
            e @ (E::InvalidPath { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::NotSupported { .. }
            | E::NotImplemented
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::UnknownConfigurationKey { .. }) => Self::Rejected(e),
            // Generic covers I/O, connection and 5xx errors that survived the client's retries.
            e => Self::Unavailable(e),
        }
    }
}

/// Lets the `crate::Result` wrappers ([`Storage::put`] and friends) keep their signatures.
impl From<StorageError> for crate::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::InvalidKey(msg) => crate::Error::InvalidKey(msg),
            StorageError::Config(msg) => crate::Error::Config(msg),
            StorageError::Unavailable(e) | StorageError::Rejected(e) => crate::Error::Storage(e),
            StorageError::NotFound { key } => {
                crate::Error::Storage(object_store::Error::NotFound {
                    path: key,
                    source: "no such object".into(),
                })
            }
            other => crate::Error::Storage(object_store::Error::Generic {
                store: "rythmiq",
                source: Box::new(other),
            }),
        }
    }
}

/// Which part of the layout a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// `raw/`: uploads, bound to their job.
    Raw,
    /// `master/`: processed master documents, bound to their document.
    Master,
    /// `output/`: delivered files, bound to their job.
    Output,
}

impl ObjectKind {
    /// The key prefix, without a slash.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Master => "master",
            Self::Output => "output",
        }
    }

    fn from_prefix(s: &str) -> Option<Self> {
        [Self::Raw, Self::Master, Self::Output]
            .into_iter()
            .find(|k| k.prefix() == s)
    }
}

/// The parts of a key. `unix_ts` and `filename` are ignored for [`ObjectKind::Master`], whose
/// leaf is `{document_id}.enc`.
#[derive(Clone, Copy, Debug)]
pub struct KeyParts<'a> {
    pub kind: ObjectKind,
    pub user_id: Uuid,
    /// Job id (`raw/`, `output/`) or document id (`master/`).
    pub id: Uuid,
    pub unix_ts: i64,
    pub filename: &'a str,
}

/// A validated object key and the id its ciphertext is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectKey {
    kind: ObjectKind,
    user_id: Uuid,
    id: Uuid,
    path: Path,
}

impl ObjectKey {
    /// The one function that builds keys: checks both ids are UUIDv4 and the timestamp is not
    /// negative, sanitises the filename, then checks the assembled key once more.
    pub fn build(parts: KeyParts<'_>) -> Result<Self, StorageError> {
        let KeyParts {
            kind,
            user_id,
            id,
            unix_ts,
            filename,
        } = parts;
        require_v4("user id", user_id)?;
        require_v4(
            if kind == ObjectKind::Master {
                "document id"
            } else {
                "job id"
            },
            id,
        )?;
        let leaf = match kind {
            ObjectKind::Master => format!("{id}{SUFFIX}"),
            ObjectKind::Raw | ObjectKind::Output => {
                if unix_ts < 0 {
                    return Err(StorageError::InvalidKey(format!(
                        "negative timestamp {unix_ts}"
                    )));
                }
                format!("{unix_ts}_{}{SUFFIX}", sanitize_filename(filename))
            }
        };
        let key = format!("{}/{user_id}/{id}/{leaf}", kind.prefix());
        check_assembled(&key)?;
        let path = Path::parse(&key).map_err(|e| StorageError::InvalidKey(e.to_string()))?;
        Ok(Self {
            kind,
            user_id,
            id,
            path,
        })
    }

    /// `raw/{user_id}/{job_id}/{unix_ts}_{filename}.enc`
    pub fn raw(
        user_id: Uuid,
        job_id: Uuid,
        unix_ts: i64,
        filename: &str,
    ) -> Result<Self, StorageError> {
        Self::build(KeyParts {
            kind: ObjectKind::Raw,
            user_id,
            id: job_id,
            unix_ts,
            filename,
        })
    }

    /// `master/{user_id}/{document_id}/{document_id}.enc`
    pub fn master(user_id: Uuid, document_id: Uuid) -> Result<Self, StorageError> {
        Self::build(KeyParts {
            kind: ObjectKind::Master,
            user_id,
            id: document_id,
            unix_ts: 0,
            filename: "",
        })
    }

    /// `output/{user_id}/{job_id}/{unix_ts}_{filename}.enc`
    pub fn output(
        user_id: Uuid,
        job_id: Uuid,
        unix_ts: i64,
        filename: &str,
    ) -> Result<Self, StorageError> {
        Self::build(KeyParts {
            kind: ObjectKind::Output,
            user_id,
            id: job_id,
            unix_ts,
            filename,
        })
    }

    /// `output/{user_id}/{batch_id}/{unix_ts}_output.zip.enc`: a batch's package, sealed for
    /// the batch id (so it can never be opened as one of the batch's jobs' outputs).
    pub fn batch_zip(user_id: Uuid, batch_id: Uuid, unix_ts: i64) -> Result<Self, StorageError> {
        Self::build(KeyParts {
            kind: ObjectKind::Output,
            user_id,
            id: batch_id,
            unix_ts,
            filename: BATCH_ZIP_NAME,
        })
    }

    /// Re-validates a stored key (from the database or a listing): it is accepted only if
    /// [`ObjectKey::build`] produces exactly the same string from its parts.
    pub fn parse(key: &str) -> Result<Self, StorageError> {
        let invalid = || StorageError::InvalidKey(format!("{key:?} is not in the storage layout"));
        let mut segments = key.split('/');
        let (Some(prefix), Some(user), Some(id), Some(leaf), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(invalid());
        };
        let kind = ObjectKind::from_prefix(prefix).ok_or_else(invalid)?;
        let user_id = Uuid::try_parse(user).map_err(|_| invalid())?;
        let id = Uuid::try_parse(id).map_err(|_| invalid())?;
        let stem = leaf.strip_suffix(SUFFIX).ok_or_else(invalid)?;
        let (unix_ts, filename) = match kind {
            ObjectKind::Master => (0, ""),
            ObjectKind::Raw | ObjectKind::Output => {
                let (ts, name) = stem.split_once('_').ok_or_else(invalid)?;
                (ts.parse::<i64>().map_err(|_| invalid())?, name)
            }
        };
        let built = Self::build(KeyParts {
            kind,
            user_id,
            id,
            unix_ts,
            filename,
        })?;
        if built.path.as_ref() == key {
            Ok(built)
        } else {
            Err(invalid())
        }
    }

    pub fn kind(&self) -> ObjectKind {
        self.kind
    }

    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// The job id (document id for `master/`): bound into the object's ciphertext.
    pub fn binding(&self) -> Uuid {
        self.id
    }

    pub fn as_path(&self) -> &Path {
        &self.path
    }

    pub fn as_str(&self) -> &str {
        self.path.as_ref()
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn require_v4(what: &str, id: Uuid) -> Result<(), StorageError> {
    if id.get_version() == Some(uuid::Version::Random) && id.get_variant() == uuid::Variant::RFC4122
    {
        Ok(())
    } else {
        Err(StorageError::InvalidKey(format!(
            "{what} {id} is not a UUIDv4"
        )))
    }
}

/// Defence in depth behind the sanitiser: the assembled key has exactly the shape we allow.
fn check_assembled(key: &str) -> Result<(), StorageError> {
    let bad = |why: &str| Err(StorageError::InvalidKey(format!("{why}: {key:?}")));
    if key.starts_with('/') {
        return bad("absolute key");
    }
    if key.contains('\0') {
        return bad("null byte in key");
    }
    if key.contains("..") {
        return bad("traversal in key");
    }
    // S3 limits keys to 1024 bytes.
    if key.len() > 1024 {
        return bad("key too long");
    }
    for segment in key.split('/') {
        if segment.is_empty() || segment == "." || !segment.bytes().all(is_safe_byte) {
            return bad("unsafe key segment");
        }
    }
    Ok(())
}

fn is_safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

pub use rythmiq_domain::safe_chars;

/// Keeps the last path component, replaces characters outside `[A-Za-z0-9._-]` with `_`,
/// collapses runs of dots (so `..` never appears), drops leading and trailing dots, caps the
/// length at [`MAX_FILENAME`]; an empty result becomes `upload`. Idempotent, which [`ObjectKey::parse`]
/// relies on.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut collapsed = String::with_capacity(base.len());
    for c in safe_chars(base).chars() {
        if !(c == '.' && collapsed.ends_with('.')) {
            collapsed.push(c);
        }
    }
    let capped: String = collapsed
        .trim_start_matches('.')
        .chars()
        .take(MAX_FILENAME)
        .collect();
    // A trailing dot would meet the `.enc` suffix and form `..`.
    let mut out = capped.trim_end_matches('.').to_owned();
    if out.is_empty() {
        out.push_str("upload");
    }
    out
}

/// Key of an uploaded original (`raw/…`), as an `object_store` path.
pub fn raw_key(user: Uuid, job: Uuid, unix_ts: i64, filename: &str) -> crate::Result<Path> {
    Ok(ObjectKey::raw(user, job, unix_ts, filename)?.path)
}

/// Key of a delivered output (`output/…`), stamped with the current time.
pub fn output_key(user: Uuid, job: Uuid, filename: &str) -> crate::Result<Path> {
    Ok(ObjectKey::output(user, job, Utc::now().timestamp(), filename)?.path)
}

/// Where objects live (`RYTHMIQ_STORAGE_BACKEND`, read by [`crate::config::ObjectStoreArgs`]).
#[derive(Clone, Debug, Default)]
pub enum Backend {
    /// Files under [`StorageSettings::root`].
    #[default]
    Local,
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// An S3-compatible bucket (the `RYTHMIQ_S3_*` settings, read by [`crate::config::S3Args`]).
/// `Debug` hides the secret.
#[derive(Clone)]
pub struct S3Config {
    /// `https://nyc3.digitaloceanspaces.com`, `http://127.0.0.1:9000`…; `None` for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    /// Plain `http://` endpoints are refused unless this is set (a loopback MinIO or moto).
    pub allow_http: bool,
    /// `https://{bucket}.{endpoint}/{key}` instead of `https://{endpoint}/{bucket}/{key}`.
    pub virtual_hosted_style: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    fn build(&self, settings: &StorageSettings) -> Result<Arc<dyn ObjectStore>, StorageError> {
        if let Some(ep) = &self.endpoint
            && ep.to_ascii_lowercase().starts_with("http://")
            && !self.allow_http
        {
            return Err(StorageError::Config(format!(
                "endpoint {ep} is plain http; set RYTHMIQ_S3_ALLOW_HTTP=true only for a loopback \
                 or private test server"
            )));
        }
        // Our own timeouts (fetch/upload) are the outer limit; the client's retries of
        // connection and 5xx errors must fit inside them.
        let budget = settings.fetch_timeout.min(settings.upload_timeout);
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 3,
            retry_timeout: budget,
        };
        // allow_http lives in the client options: set it here, since `with_client_options`
        // replaces whatever the builder's `with_allow_http` had set.
        let client = ClientOptions::new()
            .with_allow_http(self.allow_http)
            .with_connect_timeout(Duration::from_secs(5).min(budget))
            .with_timeout(settings.fetch_timeout.max(settings.upload_timeout));
        // `new()` rather than `from_env()`: ambient AWS_* variables must not change where
        // student documents go.
        let mut builder = AmazonS3Builder::new()
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(self.secret_access_key.as_str())
            .with_virtual_hosted_style_request(self.virtual_hosted_style)
            .with_client_options(client)
            .with_retry(retry);
        if let Some(ep) = &self.endpoint {
            builder = builder.with_endpoint(ep);
        }
        let store = builder
            .build()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        Ok(Arc::new(store))
    }
}

/// One object found by [`Storage::list`].
#[derive(Clone, Debug)]
pub struct StoredObject {
    pub key: ObjectKey,
    /// Stored (encrypted) size in bytes.
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// A handle on the configured object store. Everything written is sealed with the key ring's
/// current master key; everything read is opened with the key its header names.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    keys: Arc<KeyRing>,
    pub settings: StorageSettings,
}

impl Storage {
    /// Opens `backend` (for [`Backend::Local`], under `settings.root`, created if needed).
    pub fn open(
        settings: StorageSettings,
        backend: &Backend,
        keys: Arc<KeyRing>,
    ) -> Result<Self, StorageError> {
        let store: Arc<dyn ObjectStore> = match backend {
            Backend::Local => {
                std::fs::create_dir_all(&settings.root).map_err(|e| {
                    StorageError::Config(format!("{}: {e}", settings.root.display()))
                })?;
                let fs = LocalFileSystem::new_with_prefix(&settings.root)
                    .map_err(StorageError::from_store)?
                    // Remove emptied `{user}/{job}` directories after deletes (retention).
                    .with_automatic_cleanup(true);
                Arc::new(fs)
            }
            Backend::S3(s3) => s3.build(&settings)?,
        };
        Ok(Self {
            store,
            keys,
            settings,
        })
    }

    /// The key ring objects are sealed with.
    pub fn keys(&self) -> &Arc<KeyRing> {
        &self.keys
    }

    /// Seals `plaintext` and stores it under `key`, within the upload timeout.
    ///
    /// No partial object ever becomes visible: the local backend writes a staging file
    /// (`{key}#{n}`, ignored by reads and listings, removed on error) and renames it into place;
    /// S3 makes a single-part PUT visible only once the whole body has arrived, and a dropped or
    /// failed request stores nothing. Only ciphertext reaches either. On a timeout the local
    /// write may still finish in the background, which is harmless: the object is complete.
    pub async fn put_object(&self, key: &ObjectKey, plaintext: Bytes) -> Result<(), StorageError> {
        let keys = Arc::clone(&self.keys);
        let binding = key.binding();
        // AES-GCM over megabytes is CPU work: keep it off the async threads.
        let sealed = tokio::task::spawn_blocking(crate::cpu::charged(move || {
            keys.seal(binding, &plaintext)
        }))
        .await
        .map_err(|_| StorageError::Crypto(CryptoError::Seal))??;
        let write = self.store.put(key.as_path(), PutPayload::from(sealed));
        match tokio::time::timeout(self.settings.upload_timeout, write).await {
            Err(_) => Err(StorageError::Timeout(self.settings.upload_timeout)),
            Ok(r) => r.map(drop).map_err(StorageError::from_store),
        }
    }

    /// Reads and opens the object at `key`, within the fetch timeout. A tampered object, or one
    /// sealed for another job, fails with [`StorageError::Crypto`].
    pub async fn get_object(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        let read = async {
            let got = self.store.get(key.as_path()).await?;
            got.bytes().await
        };
        let sealed = match tokio::time::timeout(self.settings.fetch_timeout, read).await {
            Err(_) => return Err(StorageError::Timeout(self.settings.fetch_timeout)),
            Ok(r) => r.map_err(StorageError::from_store)?,
        };
        let keys = Arc::clone(&self.keys);
        let binding = key.binding();
        let plain =
            tokio::task::spawn_blocking(crate::cpu::charged(move || keys.open(binding, &sealed)))
                .await
                .map_err(|_| StorageError::Crypto(CryptoError::Tampered))??;
        Ok(Bytes::from(plain))
    }

    /// Deletes `key`; a missing object is not an error.
    pub async fn delete_object(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let delete = self.store.delete(key.as_path());
        match tokio::time::timeout(self.settings.upload_timeout, delete).await {
            Err(_) => Err(StorageError::Timeout(self.settings.upload_timeout)),
            Ok(Ok(()) | Err(object_store::Error::NotFound { .. })) => Ok(()),
            Ok(Err(e)) => Err(StorageError::from_store(e)),
        }
    }

    /// Every object of one kind, for retention. Entries outside the layout are skipped with a
    /// warning rather than failing the sweep.
    pub async fn list(&self, kind: ObjectKind) -> Result<Vec<StoredObject>, StorageError> {
        let prefix = Path::from(kind.prefix());
        let listing = self.store.list(Some(&prefix)).try_collect::<Vec<_>>();
        let metas = match tokio::time::timeout(self.settings.fetch_timeout, listing).await {
            Err(_) => return Err(StorageError::Timeout(self.settings.fetch_timeout)),
            Ok(r) => r.map_err(StorageError::from_store)?,
        };
        let mut out = Vec::with_capacity(metas.len());
        for meta in metas {
            match ObjectKey::parse(meta.location.as_ref()) {
                Ok(key) => out.push(StoredObject {
                    key,
                    size: meta.size,
                    last_modified: meta.last_modified,
                }),
                Err(e) => tracing::warn!(error = %e, "skipping an object outside the key layout"),
            }
        }
        Ok(out)
    }

    /// [`Storage::put_object`] for a key given as a path (as `raw_key` and `output_key` return).
    pub async fn put(&self, key: &Path, bytes: Bytes) -> crate::Result<()> {
        Ok(self
            .put_object(&ObjectKey::parse(key.as_ref())?, bytes)
            .await?)
    }

    /// [`Storage::get_object`] for a key given as a path (as stored in the database).
    pub async fn get(&self, key: &Path) -> crate::Result<Bytes> {
        Ok(self.get_object(&ObjectKey::parse(key.as_ref())?).await?)
    }

    /// [`Storage::delete_object`] for a key given as a path.
    pub async fn delete(&self, key: &Path) -> crate::Result<()> {
        Ok(self.delete_object(&ObjectKey::parse(key.as_ref())?).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn local(dir: &std::path::Path) -> Result<Storage, StorageError> {
        let keys = KeyRing::new(MasterKey::new("test", [3; 32])?);
        Storage::open(
            StorageSettings {
                root: dir.to_path_buf(),
                fetch_timeout: Duration::from_secs(5),
                upload_timeout: Duration::from_secs(5),
            },
            &Backend::Local,
            Arc::new(keys),
        )
    }

    #[test]
    fn keys_follow_the_documented_layout() -> TestResult {
        let (u, j, d) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(
            ObjectKey::raw(u, j, 1_700_000_000, "photo.jpg")?.as_str(),
            format!("raw/{u}/{j}/1700000000_photo.jpg.enc")
        );
        assert_eq!(
            ObjectKey::master(u, d)?.as_str(),
            format!("master/{u}/{d}/{d}.enc")
        );
        assert_eq!(
            ObjectKey::output(u, j, 5, "output.zip")?.as_str(),
            format!("output/{u}/{j}/5_output.zip.enc")
        );
        let b = Uuid::new_v4();
        assert_eq!(
            ObjectKey::batch_zip(u, b, 7)?.as_str(),
            format!("output/{u}/{b}/7_output.zip.enc")
        );
        assert_eq!(ObjectKey::batch_zip(u, b, 7)?.binding(), b);
        assert!(ObjectKey::batch_zip(u, Uuid::nil(), 7).is_err());
        assert!(ObjectKey::batch_zip(u, b, -1).is_err());
        let k = ObjectKey::parse(&format!("output/{u}/{j}/5_output.zip.enc"))?;
        assert_eq!(
            (k.kind(), k.user_id(), k.binding()),
            (ObjectKind::Output, u, j)
        );
        Ok(())
    }

    #[test]
    fn hostile_filenames_cannot_escape() -> TestResult {
        let (u, j) = (Uuid::new_v4(), Uuid::new_v4());
        for name in [
            "../../etc/passwd",
            "/abs/path",
            "a\0b",
            "..",
            "",
            "ok name.jpg",
            "...",
            "a..b",
            "..\\..\\windows\\system32",
            "фото.jpg",
            "%2e%2e%2f",
        ] {
            let key = raw_key(u, j, 1, name)?;
            let s = key.to_string();
            assert!(s.starts_with(&format!("raw/{u}/{j}/1_")), "{s}");
            assert!(!s.contains(".."), "{s}");
            assert!(!s.contains('\0'));
            assert_eq!(s.split('/').count(), 4, "{s}");
        }
        assert_eq!(sanitize_filename(&"x".repeat(500)).len(), MAX_FILENAME);
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_filename("a..b"), "a.b");
        Ok(())
    }

    #[test]
    fn ids_must_be_uuid_v4() {
        let v4 = Uuid::new_v4();
        let nil = Uuid::nil();
        let v1ish = Uuid::from_u128(0x1234_5678_9abc_1def_8123_4567_89ab_cdef);
        for (u, j) in [
            (nil, v4),
            (v4, nil),
            (v1ish, v4),
            (v4, v1ish),
            (Uuid::max(), v4),
        ] {
            assert!(matches!(
                ObjectKey::raw(u, j, 1, "a.jpg"),
                Err(StorageError::InvalidKey(_))
            ));
        }
        assert!(ObjectKey::raw(v4, v4, -1, "a.jpg").is_err());
        assert!(ObjectKey::master(v4, nil).is_err());
    }

    #[test]
    fn parse_accepts_only_canonical_keys() -> TestResult {
        let (u, j) = (Uuid::new_v4(), Uuid::new_v4());
        let good = format!("raw/{u}/{j}/1_a.jpg.enc");
        assert_eq!(ObjectKey::parse(&good)?.as_str(), good);
        let upper = u.to_string().to_uppercase();
        for bad in [
            format!("/raw/{u}/{j}/1_a.jpg.enc"),
            format!("raw/{u}/{j}/1_a.jpg"),
            format!("raw/{u}/{j}/01_a.jpg.enc"),
            format!("raw/{u}/{j}/1_../a.jpg.enc"),
            format!("raw/{u}/{j}/1_a..jpg.enc"),
            format!("raw/{upper}/{j}/1_a.jpg.enc"),
            format!("raw/{u}/{j}/x/1_a.jpg.enc"),
            format!("tmp/{u}/{j}/1_a.jpg.enc"),
            format!("master/{u}/{j}/{u}.enc"),
            format!("raw/{u}/{j}/1_a\0.jpg.enc"),
            "raw/x/y/z".to_string(),
            String::new(),
        ] {
            assert!(ObjectKey::parse(&bad).is_err(), "{bad:?} accepted");
        }
        Ok(())
    }

    #[tokio::test]
    async fn put_get_delete_round_trip_and_only_ciphertext_on_disk() -> TestResult {
        let dir = tempfile::tempdir()?;
        let storage = local(dir.path())?;
        let (u, j) = (Uuid::new_v4(), Uuid::new_v4());
        let key = output_key(u, j, "out.jpg")?;
        let secret = Bytes::from_static(b"hello, this is a student's passport photo");
        storage.put(&key, secret.clone()).await?;
        assert_eq!(storage.get(&key).await?, secret);

        let on_disk = std::fs::read(dir.path().join(key.as_ref()))?;
        assert!(!on_disk.windows(10).any(|w| w == &secret[..10]));

        let listed = storage.list(ObjectKind::Output).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key.as_path(), &key);

        storage.delete(&key).await?;
        assert!(storage.get(&key).await.is_err());
        storage.delete(&key).await?;
        Ok(())
    }

    #[tokio::test]
    async fn errors_fall_into_the_worker_classes() -> TestResult {
        let dir = tempfile::tempdir()?;
        let storage = local(dir.path())?;
        let (u, j) = (Uuid::new_v4(), Uuid::new_v4());
        let key = ObjectKey::raw(u, j, 1, "a.jpg")?;

        let missing = storage.get_object(&key).await;
        assert!(
            matches!(missing, Err(StorageError::NotFound { .. })),
            "{missing:?}"
        );
        assert!(missing.is_err_and(|e| !e.is_retryable()));

        storage
            .put_object(&key, Bytes::from_static(b"data"))
            .await?;
        let file = dir.path().join(key.as_str());
        let mut bytes = std::fs::read(&file)?;
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&file, &bytes)?;
        let tampered = storage.get_object(&key).await;
        assert!(
            matches!(tampered, Err(StorageError::Crypto(CryptoError::Tampered))),
            "{tampered:?}"
        );

        // The same bytes under another job's key fail too (the job id is bound in).
        let other = ObjectKey::raw(u, Uuid::new_v4(), 1, "a.jpg")?;
        storage
            .put_object(&key, Bytes::from_static(b"data"))
            .await?;
        let moved = dir.path().join(other.as_str());
        std::fs::create_dir_all(moved.parent().ok_or("no parent")?)?;
        std::fs::copy(&file, &moved)?;
        assert!(matches!(
            storage.get_object(&other).await,
            Err(StorageError::Crypto(CryptoError::Tampered))
        ));

        assert!(StorageError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(matches!(
            storage
                .put(&Path::from("raw/../../etc/passwd"), Bytes::new())
                .await,
            Err(crate::Error::InvalidKey(_))
        ));
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_visible_object() -> TestResult {
        let dir = tempfile::tempdir()?;
        let storage = local(dir.path())?;
        let (u, j) = (Uuid::new_v4(), Uuid::new_v4());
        let key = ObjectKey::raw(u, j, 1, "a.jpg")?;
        // A non-empty directory where the object should go: the 1 MiB staging write succeeds,
        // the rename into place fails (this works as root too, unlike permission bits).
        let job_dir = dir.path().join(format!("raw/{u}/{j}"));
        std::fs::create_dir_all(job_dir.join("1_a.jpg.enc"))?;
        std::fs::write(job_dir.join("1_a.jpg.enc").join("x"), b"")?;
        let err = storage
            .put_object(&key, Bytes::from(vec![7u8; 1 << 20]))
            .await;
        assert!(err.is_err());
        let leftovers: Vec<_> = std::fs::read_dir(&job_dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            leftovers,
            vec![std::ffi::OsString::from("1_a.jpg.enc")],
            "staging file left behind"
        );
        assert!(storage.list(ObjectKind::Raw).await?.is_empty());
        Ok(())
    }

    #[test]
    fn plain_http_needs_allow_http_and_secrets_stay_out_of_debug() {
        let cfg = S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            bucket: "b".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: Zeroizing::new("very-secret".into()),
            allow_http: false,
            virtual_hosted_style: false,
        };
        assert!(!format!("{cfg:?}").contains("very-secret"));
        let settings = StorageSettings {
            root: std::path::PathBuf::new(),
            fetch_timeout: Duration::from_secs(1),
            upload_timeout: Duration::from_secs(1),
        };
        assert!(matches!(cfg.build(&settings), Err(StorageError::Config(_))));
        let cfg = S3Config {
            allow_http: true,
            ..cfg
        };
        assert!(cfg.build(&settings).is_ok());
    }

    #[tokio::test]
    async fn an_unreachable_s3_endpoint_is_retryable() -> TestResult {
        // Port 9 on loopback: nothing listens, so the connection is refused.
        let cfg = S3Config {
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "us-east-1".into(),
            bucket: "b".into(),
            access_key_id: "AKIA".into(),
            secret_access_key: Zeroizing::new("s".into()),
            allow_http: true,
            virtual_hosted_style: false,
        };
        let storage = Storage::open(
            StorageSettings {
                root: std::path::PathBuf::new(),
                fetch_timeout: Duration::from_secs(2),
                upload_timeout: Duration::from_secs(2),
            },
            &Backend::S3(cfg),
            Arc::new(KeyRing::new(MasterKey::new("t", [1; 32])?)),
        )?;
        let key = ObjectKey::raw(Uuid::new_v4(), Uuid::new_v4(), 1, "a.jpg")?;
        let err = storage
            .get_object(&key)
            .await
            .err()
            .ok_or("expected an error")?;
        assert!(err.is_retryable(), "{err:?}");
        let err = storage
            .put_object(&key, Bytes::from_static(b"x"))
            .await
            .err()
            .ok_or("expected an error")?;
        assert!(err.is_retryable(), "{err:?}");
        Ok(())
    }
}
