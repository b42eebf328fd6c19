//! UPLOAD: store the verified output. Failures are retryable (`UPLOAD_FAILED`).

use bytes::Bytes;
use rythmiq_shared::storage::{Storage, output_key};

use super::JobInput;
use crate::error::JobError;

/// Writes the output and returns its key.
pub async fn upload(
    storage: &Storage,
    job: &JobInput,
    filename: &str,
    bytes: Vec<u8>,
) -> Result<String, JobError> {
    let key = output_key(job.user_id, job.job_id, filename)?;
    match tokio::time::timeout(
        storage.settings.upload_timeout,
        storage.put(&key, Bytes::from(bytes)),
    )
    .await
    {
        Err(_) => Err(JobError::UploadFailed("timed out".into())),
        Ok(Err(e)) => Err(JobError::UploadFailed(e.to_string())),
        Ok(Ok(())) => Ok(key.to_string()),
    }
}
