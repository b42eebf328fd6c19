//! Error type of the face detector.

use std::path::PathBuf;

/// Everything that can go wrong while loading the model or detecting faces.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    /// The model file is not where the configuration says.
    #[error(
        "face model file {path} is missing; fetch it with `scripts/fetch-models.sh` \
         (it installs it into $RYTHMIQ_MODELS_DIR or ./models)"
    )]
    ModelMissing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// None of the usual model directories holds the face model.
    #[error(
        "the face model was not found; looked in {}; fetch it with `scripts/fetch-models.sh`",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    ModelsNotFound {
        /// Every directory looked in, in order.
        searched: Vec<PathBuf>,
    },
    /// The model file exists but cannot be used.
    #[error(
        "face model file {path} is corrupt or not the expected model ({reason}); \
         re-fetch it with `scripts/fetch-models.sh`"
    )]
    ModelCorrupt {
        /// The offending file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The input image cannot be processed.
    #[error("invalid input image: {0}")]
    InvalidImage(String),
    /// The runtime failed while running the model.
    #[error("face detection failed: {0}")]
    Inference(String),
}
