//! HEIF (HEIC) and AVIF through libheif, behind the `heic` feature.

use image::DynamicImage;

use super::{DecodeError, DecodeLimits};
#[cfg(feature = "heic")]
use super::{check_dimensions, clean_message, cmyk_icc::rgb_profile_to_srgb, flatten_on_white};

/// Decode a HEIF (HEVC) or AVIF image through libheif.
#[cfg(feature = "heic")]
pub(super) fn decode_heif(
    bytes: &[u8],
    limits: &DecodeLimits,
    avif: bool,
) -> Result<DynamicImage, DecodeError> {
    use image::{RgbImage, RgbaImage};
    use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

    use libheif_rs::HeifErrorCode;

    let format = if avif { "AVIF" } else { "HEIF" };
    // libheif's "invalid input" and decoder errors are the file's damage (a box cut short, an
    // HEVC stream that does not decode); what it does not support is said as such.
    let corrupt = |e: libheif_rs::HeifError| match e.code {
        HeifErrorCode::InvalidInput | HeifErrorCode::DecoderPluginError => DecodeError::Damaged {
            format,
            detail: clean_message(&e.message),
        },
        _ => DecodeError::Corrupt(clean_message(&format!("{format}: {}", e.message))),
    };
    // Parses the box structure only; no pixels are decoded yet. `bytes` outlives `ctx` (the
    // binding reads from the caller's buffer without copying it).
    let ctx = HeifContext::read_from_bytes(bytes).map_err(corrupt)?;
    let handle = ctx.primary_image_handle().map_err(corrupt)?;
    // The handle's size is after `irot`/`clap`, i.e. the size of what we will get.
    check_dimensions(handle.width(), handle.height(), limits)?;
    // libheif holds the decoded YCbCr planes (up to 2 bytes a sample for 10-bit), its RGB(A)
    // output, and we copy that into our own buffer: about 14 bytes a pixel at worst.
    let pixels = u64::from(handle.width()) * u64::from(handle.height());
    if pixels.saturating_mul(14) > limits.max_alloc_bytes {
        return Err(DecodeError::MemoryLimit {
            max: limits.max_alloc_bytes,
        });
    }
    let has_alpha = handle.has_alpha_channel();
    let chroma = if has_alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    // No decoding options: libheif then applies the image's transformations (irot, imir,
    // clap) and converts any bit depth to 8-bit interleaved RGB(A).
    let image = LibHeif::new()
        .decode(&handle, ColorSpace::Rgb(chroma), None)
        .map_err(corrupt)?;
    let planes = image.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| DecodeError::Corrupt(format!("{format}: libheif returned no pixels")))?;
    let channels = if has_alpha { 4 } else { 3 };
    let (w, h) = (plane.width, plane.height);
    check_dimensions(w, h, limits)?;
    let row_len = usize::try_from(w)
        .unwrap_or(usize::MAX)
        .saturating_mul(channels);
    let rows = usize::try_from(h).unwrap_or(usize::MAX);
    let mut packed = Vec::with_capacity(row_len.saturating_mul(rows));
    for row in plane.data.chunks(plane.stride).take(rows) {
        let row = row
            .get(..row_len)
            .ok_or_else(|| DecodeError::Corrupt(format!("{format}: short pixel row")))?;
        packed.extend_from_slice(row);
    }
    let wrong_size = || DecodeError::Corrupt(format!("{format}: wrong pixel buffer size"));
    let img = if has_alpha {
        DynamicImage::ImageRgba8(RgbaImage::from_raw(w, h, packed).ok_or_else(wrong_size)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, packed).ok_or_else(wrong_size)?)
    };
    let mut rgb = flatten_on_white(img);
    // iPhones tag their HEICs with a Display P3 ICC profile.
    if let Some(profile) = handle.color_profile_raw() {
        rgb_profile_to_srgb(&mut rgb, &profile.data);
    }
    Ok(DynamicImage::ImageRgb8(rgb))
}

/// Without libheif this build recognises HEIF and AVIF but cannot decode them.
#[cfg(not(feature = "heic"))]
pub(super) fn decode_heif(
    _bytes: &[u8],
    _limits: &DecodeLimits,
    avif: bool,
) -> Result<DynamicImage, DecodeError> {
    Err(DecodeError::UnsupportedFormat {
        format: if avif { "AVIF" } else { "HEIF" }.to_owned(),
    })
}
