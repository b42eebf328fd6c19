//! Error type of the OCR engine.

use std::path::PathBuf;

/// Everything that can go wrong while loading the models or reading a page.
#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    /// A model or dictionary file is not where the configuration says.
    #[error(
        "OCR model file {path} is missing; fetch the models with `scripts/fetch-models.sh` \
         (it installs them into $RYTHMIQ_MODELS_DIR or ./models)"
    )]
    ModelMissing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// No directory was configured and none of the usual places holds the models.
    #[error(
        "the OCR models were not found; looked in {}; fetch them with \
         `scripts/fetch-models.sh` (into ./models, or the directory $RYTHMIQ_MODELS_DIR names), \
         or point --models-dir / RYTHMIQ_MODELS_DIR at them",
        list_paths(searched)
    )]
    ModelsNotFound {
        /// Every directory looked in, in order.
        searched: Vec<PathBuf>,
    },
    /// A model or dictionary file exists but cannot be used.
    #[error(
        "OCR model file {path} is corrupt or not the expected model ({reason}); \
         re-fetch it with `scripts/fetch-models.sh`"
    )]
    ModelCorrupt {
        /// The offending file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The input image cannot be processed (for example it has no pixels).
    #[error("invalid input image: {0}")]
    InvalidImage(String),
    /// The caller's deadline ([`crate::OcrOptions::deadline`]) passed before
    /// the page was read; the pass stopped at the next model run.
    #[error("OCR did not finish before its deadline")]
    DeadlineExceeded,
    /// The inference runtime failed while running a model.
    #[error("OCR inference failed: {0}")]
    Inference(String),
}

/// Paths, comma-separated, for an error message.
fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
