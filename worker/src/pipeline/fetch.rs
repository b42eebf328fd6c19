//! FETCH: read the upload from the object store, with a time limit.

use bytes::Bytes;
use rythmiq_shared::storage::Storage;

use crate::error::JobError;

/// Reads the object at `key`. A timeout is retryable (`FETCH_TIMEOUT`); anything else, such as a
/// missing object, is final (`FETCH_FAILED`).
pub async fn fetch(storage: &Storage, key: &str) -> Result<Bytes, JobError> {
    let path = object_store::path::Path::parse(key)
        .map_err(|e| JobError::FetchFailed(format!("invalid input key: {e}")))?;
    match tokio::time::timeout(storage.settings.fetch_timeout, storage.get(&path)).await {
        Err(_) => Err(JobError::FetchTimeout),
        Ok(Err(e)) => Err(JobError::FetchFailed(e.to_string())),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}
