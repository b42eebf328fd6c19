//! Files holding more than one picture (multi-page TIFF, animated GIF and WebP): the first page or
//! frame is the one used, and the job's `warnings` say so.

use std::io::Cursor;

use image::codecs::gif::GifDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, ImageDecoder, ImageFormat, Limits};

use super::error::map_image_error;
use super::tiff_samples::{MULTI_PAGE_WARNING, has_more_pages};
use super::{DecodeError, DecodeLimits};

/// The warning for an animated GIF or WebP.
pub(super) fn animation_warning(format: ImageFormat) -> String {
    let name = if format == ImageFormat::Gif {
        "GIF"
    } else {
        "WebP"
    };
    format!("the {name} file is animated; only its first frame was used")
}

/// The warnings for a file whose first picture has been decoded. An animated GIF whose second
/// frame cannot be read is cut short, and refused like any other damaged file.
pub(super) fn warnings(
    bytes: &[u8],
    format: ImageFormat,
    limits: &DecodeLimits,
) -> Result<Vec<String>, DecodeError> {
    let mut warnings = Vec::new();
    match format {
        ImageFormat::Tiff if has_more_pages(bytes) => warnings.push(MULTI_PAGE_WARNING.to_owned()),
        ImageFormat::Gif if gif_is_animated(bytes, limits)? => {
            warnings.push(animation_warning(format));
        }
        // The header says whether it is animated; no frame is decoded again.
        ImageFormat::WebP
            if WebPDecoder::new(Cursor::new(bytes)).is_ok_and(|d| d.has_animation()) =>
        {
            warnings.push(animation_warning(format));
        }
        _ => {}
    }
    Ok(warnings)
}

/// Whether a GIF has a second frame: GIF has no frame count, so the second frame is decoded
/// (under the same memory limit as the first).
fn gif_is_animated(bytes: &[u8], limits: &DecodeLimits) -> Result<bool, DecodeError> {
    let mut decoder = GifDecoder::new(Cursor::new(bytes))
        .map_err(|e| map_image_error(e, ImageFormat::Gif, limits))?;
    let mut gif_limits = Limits::default();
    gif_limits.max_image_width = Some(limits.max_width);
    gif_limits.max_image_height = Some(limits.max_height);
    gif_limits.max_alloc = Some(limits.max_alloc_bytes);
    decoder
        .set_limits(gif_limits)
        .map_err(|e| map_image_error(e, ImageFormat::Gif, limits))?;
    let mut frames = decoder.into_frames();
    for _ in 0..2 {
        match frames.next() {
            None => return Ok(false),
            Some(Err(e)) => return Err(map_image_error(e, ImageFormat::Gif, limits)),
            Some(Ok(_)) => {}
        }
    }
    Ok(true)
}
