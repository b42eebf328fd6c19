//! The pipeline's one error type. Each failure maps to exactly one user-visible error code.

use rythmiq_domain::ErrorCode;

use crate::decode::DecodeError;
use crate::fit::FitError;

/// Why the CPU stages could not turn an upload into a compliant file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The upload is not an acceptable image, or it does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The image cannot be made to fit the portal's rule.
    #[error(transparent)]
    Fit(#[from] FitError),
    /// The OCR engine failed.
    #[error("OCR failed: {0}")]
    Ocr(#[source] rythmiq_ocr::OcrError),
    /// OCR used up the job's OCR time budget.
    #[error("OCR ran longer than the job's OCR time limit")]
    OcrTimeout,
    /// The rule frames by the face and the photo has none.
    #[error(
        "no face was found in the photo; this portal needs a photo of your face, looking at the \
         camera, with the whole head in the picture"
    )]
    FaceNotFound,
    /// The rule frames by the face and the photo has more than one of similar size.
    #[error("{count} faces of similar size were found; this portal needs a photo of you alone")]
    MultipleFaces {
        /// How many faces reached the size of the largest.
        count: usize,
    },
    /// The face detector failed (loading its model, or running it).
    #[error("face detection failed: {0}")]
    Face(#[source] rythmiq_face::FaceError),
}

impl Error {
    /// The user-visible error code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Decode(e) => e.code(),
            Error::Fit(e) => e.code(),
            Error::Ocr(_) => ErrorCode::OcrFailed,
            Error::OcrTimeout => ErrorCode::OcrTimeout,
            Error::FaceNotFound => ErrorCode::FaceNotFound,
            Error::MultipleFaces { .. } => ErrorCode::MultipleFaces,
            Error::Face(_) => ErrorCode::Internal,
        }
    }
}
