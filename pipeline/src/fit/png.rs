//! PNG: lossless, so the byte window is met by colour type (greyscale for signatures) and
//! padding only.

use image::{DynamicImage, RgbImage};
use rythmiq_domain::DocumentKind;

use super::{FitError, PADDING_NOTE, Target, len_u64};

pub(crate) const PNG_MAGIC: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

pub(super) fn fit_png(
    pixels: &RgbImage,
    kind: DocumentKind,
    target: &Target,
    warnings: &mut Vec<String>,
) -> Result<Vec<u8>, FitError> {
    let mut png = encode_png(
        pixels.as_raw(),
        pixels.width(),
        pixels.height(),
        ::png::ColorType::Rgb,
        target.dpi,
    )?;
    if len_u64(&png) > target.max && kind == DocumentKind::Signature {
        // Signatures are ink on paper; dropping colour costs nothing visible and a third of the
        // data.
        let grey = DynamicImage::ImageRgb8(pixels.clone()).into_luma8();
        let grey_png = encode_png(
            grey.as_raw(),
            grey.width(),
            grey.height(),
            ::png::ColorType::Grayscale,
            target.dpi,
        )?;
        if len_u64(&grey_png) < len_u64(&png) {
            png = grey_png;
            warnings.push("the signature was saved in greyscale to fit the size limit".to_owned());
        }
    }
    let size = len_u64(&png);
    if size > target.max {
        return Err(FitError::SizeExceeded {
            smallest: size,
            max: target.max,
        });
    }
    if size < target.min {
        png = pad_png(&png, target.min - size)?;
        warnings.push(format!(
            "the image compresses to only {size} bytes; {} bytes of metadata padding were added \
             to reach the portal's minimum of {} bytes (the picture is unchanged)",
            len_u64(&png) - size,
            target.min
        ));
    }
    Ok(png)
}

/// A PNG of `raw` pixels with the rule's DPI in its pHYs chunk (which the `png` crate writes
/// right after IHDR), compressed as `image`'s `PngEncoder` does at `CompressionType::Best` with
/// adaptive filtering.
pub(super) fn encode_png(
    raw: &[u8],
    width: u32,
    height: u32,
    colour: ::png::ColorType,
    dpi: u16,
) -> Result<Vec<u8>, FitError> {
    let failed = |e: ::png::EncodingError| FitError::Failed(format!("PNG encoding failed: {e}"));
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, width, height);
    encoder.set_color(colour);
    encoder.set_depth(::png::BitDepth::Eight);
    encoder.set_compression(::png::Compression::High);
    encoder.set_filter(::png::Filter::Adaptive);
    let ppm = dpi_to_ppm(dpi);
    encoder.set_pixel_dims(Some(::png::PixelDimensions {
        xppu: ppm,
        yppu: ppm,
        unit: ::png::Unit::Meter,
    }));
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(raw).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(out)
}

/// Add a `tEXt` comment of at least `extra` bytes before IEND; viewers ignore or merely show it.
/// The chunk is spliced into the finished file rather than encoded again with it: the image data
/// stays byte for byte what was measured.
pub(super) fn pad_png(png: &[u8], extra: u64) -> Result<Vec<u8>, FitError> {
    use ::png::text_metadata::{EncodableTextChunk, TEXtChunk};

    const IEND_LEN: usize = 12;
    const KEYWORD: &str = "Comment";
    // Length, type and CRC, then the keyword and its NUL separator.
    const OVERHEAD: usize = 12 + KEYWORD.len() + 1;
    let extra = usize::try_from(extra)
        .map_err(|_| FitError::Failed("padding does not fit in memory".to_owned()))?;
    let body = png
        .len()
        .checked_sub(IEND_LEN)
        .filter(|&at| png.get(at + 4..at + 8) == Some(b"IEND".as_slice()))
        .ok_or_else(|| FitError::Failed("PNG encoder output lacks IEND".to_owned()))?;
    let text_len = extra.saturating_sub(OVERHEAD);
    // ASCII, so any byte index is a character boundary.
    let mut text = String::with_capacity(text_len);
    text.push_str(&PADDING_NOTE[..PADDING_NOTE.len().min(text_len)]);
    text.extend(std::iter::repeat_n(' ', text_len - text.len()));

    let mut out = Vec::with_capacity(png.len() + extra.max(OVERHEAD));
    out.extend_from_slice(&png[..body]);
    TEXtChunk::new(KEYWORD, text)
        .encode(&mut out)
        .map_err(|e| FitError::Failed(format!("PNG padding failed: {e}")))?;
    out.extend_from_slice(&png[body..]);
    Ok(out)
}

/// Pixels per metre for `dpi` (pHYs stores metres), rounded.
pub(super) fn dpi_to_ppm(dpi: u16) -> u32 {
    (u32::from(dpi) * 10_000 + 127) / 254
}

/// DPI for a pixels-per-metre value, rounded (inverse of [`dpi_to_ppm`]).
pub(crate) fn ppm_to_dpi(ppm: u32) -> u64 {
    (u64::from(ppm) * 254 + 5_000) / 10_000
}
