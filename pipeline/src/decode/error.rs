//! Why a decode failed, and how decoder errors become messages fit for users and logs.

use std::time::Duration;

use image::error::{LimitErrorKind, UnsupportedErrorKind};
use image::{ImageError, ImageFormat};
use rythmiq_domain::ErrorCode;

use super::DecodeLimits;

/// Formats named in user-facing messages.
#[cfg(feature = "heic")]
pub(super) const ACCEPTED: &str = "JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC";

#[cfg(not(feature = "heic"))]
pub(super) const ACCEPTED: &str = "JPEG, PNG, WebP, TIFF, BMP or GIF";

/// Why an upload could not be decoded. Messages never contain file contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The upload has no bytes at all.
    #[error("the uploaded file is empty")]
    Empty,
    /// The upload is bigger than `max_input_bytes`.
    #[error("the uploaded file is {size} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Size of the upload.
        size: u64,
        /// The limit it broke.
        max: u64,
    },
    /// The content is not any image format we recognise.
    #[error("the uploaded file is not a recognised image (expected {ACCEPTED})")]
    UnknownFormat,
    /// The content is a recognised image format that this build cannot read (e.g. AVIF).
    #[error("the image format {format} is not supported (expected {ACCEPTED})")]
    UnsupportedFormat {
        /// Name of the recognised format.
        format: String,
    },
    /// The header announces more pixels than we are willing to decode.
    #[error(
        "the image is {width}×{height} pixels, more than the limit of {max_width}×{max_height} \
         pixels or {max_pixels} pixels in total"
    )]
    DimensionsTooLarge {
        /// Width announced by the header.
        width: u32,
        /// Height announced by the header.
        height: u32,
        /// The width limit.
        max_width: u32,
        /// The height limit.
        max_height: u32,
        /// The pixel-count limit.
        max_pixels: u64,
    },
    /// Decoding would need more memory than `max_alloc_bytes`.
    #[error("decoding the image would need more than the limit of {max} bytes of memory")]
    MemoryLimit {
        /// The memory limit.
        max: u64,
    },
    /// The decode ran past `max_decode_time`.
    #[error("decoding the image took longer than the limit of {} s", .limit.as_secs_f64())]
    Timeout {
        /// The time limit.
        limit: Duration,
    },
    /// The file is damaged, truncated or uses a feature the decoder cannot handle.
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
    /// The file is a recognised image whose data is cut short or corrupt: what a decoder would
    /// make of it (grey rows, skipped blocks) is not the picture that was taken, so it is
    /// refused rather than processed.
    #[error(
        "the {format} file is incomplete or damaged ({detail}); upload the original file again"
    )]
    Damaged {
        /// The format the content sniffed as (`JPEG`, `PNG`…).
        format: &'static str,
        /// What is wrong, as far as the decoder can tell (never file contents).
        detail: String,
    },
    /// A fault of ours, not of the upload (no thread could be started, or too many earlier
    /// decodes are still running after their deadline); worth retrying later.
    #[error("the decoder is unavailable: {0}")]
    Unavailable(String),
}

impl DecodeError {
    /// Whether the upload itself is unacceptable (`PAYLOAD_INVALID`) rather than an image that
    /// failed to decode (`DECODE_FAILED`).
    pub fn is_payload_invalid(&self) -> bool {
        matches!(
            self,
            DecodeError::Empty
                | DecodeError::TooLarge { .. }
                | DecodeError::UnknownFormat
                | DecodeError::UnsupportedFormat { .. }
        )
    }

    /// The user-visible error code for this failure.
    pub fn code(&self) -> ErrorCode {
        if self.is_payload_invalid() {
            ErrorCode::PayloadInvalid
        } else if matches!(self, DecodeError::Unavailable(_)) {
            // Not the user's fault and transient: let the queue retry.
            ErrorCode::Internal
        } else {
            ErrorCode::DecodeFailed
        }
    }
}

/// The name users know a format by, for messages.
pub(super) fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Tiff => "TIFF",
        ImageFormat::Bmp => "BMP",
        ImageFormat::Gif => "GIF",
        _ => "image",
    }
}

/// A decoder's error as the user will see it. Decoding and I/O errors (a stream that ends
/// early, a bad checksum, a chunk that does not parse) mean the file itself is damaged.
pub(super) fn map_image_error(
    err: ImageError,
    format: ImageFormat,
    limits: &DecodeLimits,
) -> DecodeError {
    match err {
        ImageError::Unsupported(e) => match e.kind() {
            UnsupportedErrorKind::Format(hint) => DecodeError::UnsupportedFormat {
                format: clean_message(&hint.to_string()),
            },
            _ => DecodeError::Corrupt(clean_message(&e.to_string())),
        },
        ImageError::Limits(e) => match e.kind() {
            // Only reachable if a decoder checks dimensions before we can; report the limits.
            LimitErrorKind::DimensionError => DecodeError::Corrupt(format!(
                "the image is larger than the limit of {}×{} pixels",
                limits.max_width, limits.max_height
            )),
            _ => DecodeError::MemoryLimit {
                max: limits.max_alloc_bytes,
            },
        },
        ImageError::Decoding(e) => DecodeError::Damaged {
            format: format_name(format),
            detail: clean_message(&e.to_string()),
        },
        ImageError::IoError(e) => DecodeError::Damaged {
            format: format_name(format),
            detail: if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "the data ends early".to_owned()
            } else {
                clean_message(&e.to_string())
            },
        },
        other => DecodeError::Corrupt(clean_message(&other.to_string())),
    }
}

/// Keep decoder messages short and printable: they end up in API responses and logs, and must
/// never echo raw file bytes.
pub(super) fn clean_message(msg: &str) -> String {
    const MAX_CHARS: usize = 160;
    let cleaned: String = msg
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() {
                c
            } else if c.is_whitespace() {
                ' '
            } else {
                '?'
            }
        })
        .take(MAX_CHARS)
        .collect();
    if cleaned.trim().is_empty() {
        "malformed image data".to_owned()
    } else {
        cleaned
    }
}
