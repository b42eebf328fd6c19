//! FETCH: read the upload from the object store, with a time limit.

use bytes::Bytes;
use rythmiq_shared::storage::{ObjectKey, Storage};

use crate::error::JobError;

/// Reads and decrypts the object at `key` (the storage applies the fetch timeout). A timeout or
/// an unreachable store is retryable (`FETCH_TIMEOUT`); a missing, refused or tampered object
/// is final (`FETCH_FAILED`).
pub async fn fetch(storage: &Storage, key: &str) -> Result<Bytes, JobError> {
    let key = ObjectKey::parse(key)
        .map_err(|e| JobError::FetchFailed(format!("invalid input key: {e}")))?;
    match storage.get_object(&key).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.is_retryable() => Err(JobError::FetchTimeout),
        Err(e) => Err(JobError::FetchFailed(e.to_string())),
    }
}
