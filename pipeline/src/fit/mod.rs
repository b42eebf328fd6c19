//! Schema-fit stage: crop, resize and encode an image so the file matches a portal rule exactly
//! (pixel size, DPI, format and byte window), and verify the result independently.
//!
//! Nothing non-compliant leaves [`fit`]: it re-reads its own output with [`verify`] first.
//!
//! [`rules`] checks the rule, [`resize`] crops (around the subject for photos, [`crop`]) and
//! resamples, [`jpeg`], [`png`] and [`pdf`] encode into the byte window, [`verify`] re-reads the
//! result; [`output_filename`] names it.

mod crop;
mod filename;
mod jpeg;
mod pdf;
mod png;
mod resize;
mod rules;
#[cfg(test)]
mod tests;
mod verify;

use image::DynamicImage;
use rythmiq_domain::{ErrorCode, OutputFormat, PortalRule};

pub use filename::output_filename;
use jpeg::fit_jpeg_family;
use pdf::wrap_pdf;
use png::fit_png;
use resize::resize_to_target;
use rules::Target;
pub use verify::verify;
// The check report reads files the way verification does (one definition of each requirement).
pub(crate) use jpeg::jfif_segment;
pub(crate) use png::{PNG_MAGIC, ppm_to_dpi};
pub(crate) use verify::{find, sniff};

/// A file that satisfies a portal rule, ready to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FitOutput {
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Pixel width (equals the rule's).
    pub width: u32,
    /// Pixel height (equals the rule's).
    pub height: u32,
    /// Dots per inch written into the file (equals the rule's).
    pub dpi: u32,
    /// The container format (equals the rule's).
    pub format: OutputFormat,
    /// Things the user should know, e.g. that the file was padded to reach the minimum size.
    pub warnings: Vec<String>,
}

/// Why an image could not be made to fit a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    /// Even the smallest encoding we can make is above the rule's maximum size.
    #[error(
        "the smallest file we can produce is {smallest} bytes, above the portal's limit of {max} bytes"
    )]
    SizeExceeded {
        /// Size of the smallest encoding tried.
        smallest: u64,
        /// The rule's maximum, in bytes.
        max: u64,
    },
    /// The rule is unusable or encoding failed.
    #[error("could not produce the file: {0}")]
    Failed(String),
    /// A file does not satisfy the rule (from [`verify`]).
    #[error("the file does not meet the portal's rule: {0}")]
    NotCompliant(String),
}

impl FitError {
    /// The user-visible error code: `SIZE_EXCEEDED` or `SCHEMA_FAILED`.
    pub fn code(&self) -> ErrorCode {
        match self {
            FitError::SizeExceeded { .. } => ErrorCode::SizeExceeded,
            FitError::Failed(_) | FitError::NotCompliant(_) => ErrorCode::SchemaFailed,
        }
    }
}

/// What padding (JPEG COM segments, PNG tEXt chunks) says, for anyone who looks.
const PADDING_NOTE: &str = "rythmiq size padding";

/// Crop (centred) to the rule's aspect ratio, resize to its exact pixel size and encode it in its
/// format with its DPI, landing inside its byte window.
///
/// Fails with [`FitError::SizeExceeded`] when even the smallest acceptable encoding is too big.
pub fn fit(img: &DynamicImage, rule: &PortalRule) -> Result<FitOutput, FitError> {
    let target = Target::from_rule(rule)?;
    let mut warnings = Vec::new();
    let pixels = resize_to_target(img, rule.kind, &target, &mut warnings)?;

    let bytes = match rule.format {
        OutputFormat::Jpeg => {
            fit_jpeg_family(&pixels, rule.kind, &target, &mut warnings, |jpeg| {
                Ok(jpeg.to_vec())
            })?
        }
        OutputFormat::Pdf => fit_jpeg_family(&pixels, rule.kind, &target, &mut warnings, |jpeg| {
            Ok(wrap_pdf(jpeg, &target, pixels.is_grey()))
        })?,
        // PNG keeps its RGB colour type (and its own greyscale fallback for signatures).
        OutputFormat::Png => fit_png(&pixels.into_rgb(), rule.kind, &target, &mut warnings)?,
    };

    // Belt and braces: re-read the file exactly as a portal would before handing it out.
    verify(&bytes, rule)?;
    Ok(FitOutput {
        bytes,
        width: target.width,
        height: target.height,
        dpi: u32::from(target.dpi),
        format: rule.format,
        warnings,
    })
}

fn len_u64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}
