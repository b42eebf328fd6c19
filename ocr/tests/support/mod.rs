//! Shared helpers for the tests and the benchmark example.

pub mod capture;
pub mod render;

/// Where the models are: `$RYTHMIQ_MODELS_DIR`, else the workspace's `models/` (where
/// `scripts/fetch-models.sh` puts them), whatever the working directory.
pub fn models_dir() -> std::path::PathBuf {
    match std::env::var_os("RYTHMIQ_MODELS_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("models"),
    }
}
