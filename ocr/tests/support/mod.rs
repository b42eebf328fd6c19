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

/// Deterministic values in [-1, 1) (a 64-bit LCG; no `rand` needed).
#[allow(dead_code)] // the pipeline's tests include this module without using it
pub fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// The three OCR models with a small input of the shape each takes (NCHW), for tests that
/// run them on noise.
#[allow(dead_code)] // not every test that includes this module runs the models
pub const MODEL_INPUTS: [(&str, [usize; 4]); 3] = [
    (rythmiq_ocr::REC_MODEL, [1, 3, 48, 200]),
    (rythmiq_ocr::CLS_MODEL, [2, 3, 80, 160]),
    (rythmiq_ocr::DET_MODEL, [1, 3, 96, 128]),
];
