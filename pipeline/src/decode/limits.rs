//! The bounds every decode runs under, and the checks that apply them before any pixel buffer
//! is allocated.

use std::time::Duration;

use super::DecodeError;

/// Upper bounds applied to every decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted upload, in bytes.
    pub max_input_bytes: u64,
    /// Largest accepted image width, in pixels.
    pub max_width: u32,
    /// Largest accepted image height, in pixels.
    pub max_height: u32,
    /// Largest accepted pixel count (width × height).
    pub max_pixels: u64,
    /// Most memory the decoder may allocate, in bytes.
    pub max_alloc_bytes: u64,
    /// Longest a decode may take (wall clock) before it fails with [`DecodeError::Timeout`].
    pub max_decode_time: Duration,
}

impl Default for DecodeLimits {
    /// 20 MiB input, 12,000 × 12,000 pixels, 50 megapixels (as imgproxy), 512 MiB of memory,
    /// 10 seconds (a 50 MP progressive JPEG decodes in about 1 s on one core).
    fn default() -> Self {
        DecodeLimits {
            max_input_bytes: 20 * 1024 * 1024,
            max_width: 12_000,
            max_height: 12_000,
            max_pixels: 50_000_000,
            max_alloc_bytes: 512 * 1024 * 1024,
            max_decode_time: Duration::from_secs(10),
        }
    }
}

pub(super) fn check_input_size(len: usize, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    let size = u64::try_from(len).unwrap_or(u64::MAX);
    if size > limits.max_input_bytes {
        return Err(DecodeError::TooLarge {
            size,
            max: limits.max_input_bytes,
        });
    }
    Ok(())
}

/// Reject images whose announced size breaks the limits (or that have no pixels at all).
pub(super) fn check_dimensions(
    width: u32,
    height: u32,
    limits: &DecodeLimits,
) -> Result<(), DecodeError> {
    if width == 0 || height == 0 {
        return Err(DecodeError::Corrupt("the image has no pixels".to_owned()));
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_width || height > limits.max_height || pixels > limits.max_pixels {
        return Err(DecodeError::DimensionsTooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}
