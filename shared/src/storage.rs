//! Object storage through `object_store`: the local filesystem by default.
//!
//! Keys follow the seeds' layout, `raw/{user_id}/{job_id}/{ts}_{filename}` for uploads and
//! `output/{user_id}/{job_id}/{filename}` for results, and are built only by [`raw_key`] and
//! [`output_key`], which sanitise the one free-form part (the filename).

use std::sync::Arc;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use uuid::Uuid;

use crate::config::StorageSettings;
use crate::{Error, Result};

/// Longest filename part kept in a key.
const MAX_FILENAME: usize = 128;

/// A handle on the configured object store.
#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    pub settings: StorageSettings,
}

impl Storage {
    /// Opens the store described by `settings`, creating the local root if needed.
    pub fn open(settings: StorageSettings) -> Result<Self> {
        std::fs::create_dir_all(&settings.root)?;
        let store = LocalFileSystem::new_with_prefix(&settings.root)?;
        Ok(Self {
            store: Arc::new(store),
            settings,
        })
    }

    /// Stores `bytes` under `key`. The local backend writes to a temporary file and renames
    /// it, so a failed write never leaves a partial object visible.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<()> {
        self.store.put(key, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Reads the whole object at `key`.
    pub async fn get(&self, key: &Path) -> Result<Bytes> {
        Ok(self.store.get(key).await?.bytes().await?)
    }

    /// Deletes `key`; a missing object is not an error.
    pub async fn delete(&self, key: &Path) -> Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Replaces every character outside `[A-Za-z0-9._-]` with `_`: the one character set that is
/// safe in object keys, file names and `Content-Disposition` headers alike.
pub fn safe_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Keeps `[A-Za-z0-9._-]`, replaces the rest with `_`, drops leading dots, caps the length.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned = safe_chars(base);
    let trimmed = cleaned.trim_start_matches('.');
    let mut out: String = trimmed.chars().take(MAX_FILENAME).collect();
    if out.is_empty() {
        out.push_str("upload");
    }
    out
}

fn parse(key: String) -> Result<Path> {
    Path::parse(&key).map_err(|e| Error::InvalidKey(e.to_string()))
}

/// Key of an uploaded original.
pub fn raw_key(user: Uuid, job: Uuid, unix_ts: i64, filename: &str) -> Result<Path> {
    parse(format!(
        "raw/{user}/{job}/{unix_ts}_{}",
        sanitize_filename(filename)
    ))
}

/// Key of a delivered output.
pub fn output_key(user: Uuid, job: Uuid, filename: &str) -> Result<Path> {
    parse(format!(
        "output/{user}/{job}/{}",
        sanitize_filename(filename)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_filenames_cannot_escape() -> Result<()> {
        let (u, j) = (Uuid::new_v4(), Uuid::new_v4());
        for name in [
            "../../etc/passwd",
            "/abs/path",
            "a\0b",
            "..",
            "",
            "ok name.jpg",
            "...",
        ] {
            let key = raw_key(u, j, 1, name)?;
            let s = key.to_string();
            assert!(s.starts_with(&format!("raw/{u}/{j}/1_")), "{s}");
            assert!(!s.contains(".."), "{s}");
            assert!(!s.contains('\0'));
        }
        assert_eq!(sanitize_filename(&"x".repeat(500)).len(), MAX_FILENAME);
        Ok(())
    }

    #[tokio::test]
    async fn put_get_delete_round_trip() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let storage = Storage::open(StorageSettings {
            root: dir.path().to_path_buf(),
            fetch_timeout: std::time::Duration::from_secs(5),
            upload_timeout: std::time::Duration::from_secs(5),
        })?;
        let key = output_key(Uuid::new_v4(), Uuid::new_v4(), "out.jpg")?;
        storage.put(&key, Bytes::from_static(b"hello")).await?;
        assert_eq!(storage.get(&key).await?, Bytes::from_static(b"hello"));
        storage.delete(&key).await?;
        assert!(storage.get(&key).await.is_err());
        storage.delete(&key).await?;
        Ok(())
    }
}
