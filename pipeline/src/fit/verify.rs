//! Verification: a finished file re-read as a portal would, independently of how it was made.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use rythmiq_domain::{OutputFormat, PortalRule};

use super::jpeg::jfif_segment;
use super::pdf::points;
use super::png::{PNG_MAGIC, ppm_to_dpi};
use super::rules::{MAX_TARGET_PIXELS, Target};
use super::{FitError, len_u64};

/// Check a finished file against a rule: format (by magic bytes), pixel size, DPI stored in the
/// file, byte size within [`PortalRule::byte_window`], and that the image data decodes.
pub fn verify(bytes: &[u8], rule: &PortalRule) -> Result<(), FitError> {
    let target = Target::from_rule(rule)?;
    let detected = sniff(bytes);
    if detected != Some(rule.format) {
        return Err(FitError::NotCompliant(format!(
            "the file is {}, the portal wants {}",
            detected.map_or("not a JPEG, PNG or PDF", |f| f.content_type()),
            rule.format.content_type()
        )));
    }
    let size = len_u64(bytes);
    if size < target.min || size > target.max {
        return Err(FitError::NotCompliant(format!(
            "the file is {size} bytes, outside the window of {}–{} bytes",
            target.min, target.max
        )));
    }
    match rule.format {
        OutputFormat::Jpeg => verify_jpeg(bytes, &target),
        OutputFormat::Png => verify_png(bytes, &target),
        OutputFormat::Pdf => verify_pdf(bytes, &target),
    }
}

pub(crate) fn sniff(bytes: &[u8]) -> Option<OutputFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(OutputFormat::Jpeg)
    } else if bytes.starts_with(PNG_MAGIC) {
        Some(OutputFormat::Png)
    } else if bytes.starts_with(b"%PDF-") {
        Some(OutputFormat::Pdf)
    } else {
        None
    }
}

pub(super) fn not_compliant(msg: impl Into<String>) -> FitError {
    FitError::NotCompliant(msg.into())
}

pub(super) fn verify_jpeg(jpeg: &[u8], target: &Target) -> Result<(), FitError> {
    let (payload, _) = jfif_segment(jpeg)
        .ok_or_else(|| not_compliant("the JPEG has no JFIF header, so it carries no DPI"))?;
    // JFIF APP0: "JFIF\0", version (2), units (1), X density (2), Y density (2).
    let field = |at: usize| jpeg.get(payload + at).copied().unwrap_or(0);
    let units = field(7);
    let x = u16::from_be_bytes([field(8), field(9)]);
    let y = u16::from_be_bytes([field(10), field(11)]);
    if units != 1 {
        return Err(not_compliant(format!(
            "the JPEG density unit is {units}, not dots per inch"
        )));
    }
    if x != target.dpi || y != target.dpi {
        return Err(not_compliant(format!(
            "the JPEG says {x}×{y} DPI, the portal wants {}",
            target.dpi
        )));
    }
    if !jpeg.ends_with(&[0xFF, 0xD9]) {
        return Err(not_compliant("the JPEG is truncated"));
    }
    check_pixels(jpeg, ImageFormat::Jpeg, target)
}

pub(super) fn verify_png(png: &[u8], target: &Target) -> Result<(), FitError> {
    let mut at = PNG_MAGIC.len();
    let mut dpi = None;
    let mut first = true;
    let mut ended = false;
    while at < png.len() {
        let len = png
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        let kind = png
            .get(at + 4..at + 8)
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        let data_end = at
            .checked_add(8 + len)
            .filter(|&end| end + 4 <= png.len())
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        let data = &png[at + 8..data_end];
        let stored = png
            .get(data_end..data_end + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| not_compliant("the PNG is truncated"))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        if crc.finalize() != stored {
            return Err(not_compliant("a PNG chunk has a bad checksum"));
        }
        if first && kind != b"IHDR" {
            return Err(not_compliant("the PNG does not start with IHDR"));
        }
        first = false;
        match kind {
            b"pHYs" if data.len() == 9 => {
                let x = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let y = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                if data[8] != 1 || x != y {
                    return Err(not_compliant(
                        "the PNG pHYs chunk is not a square per-metre density",
                    ));
                }
                dpi = Some(ppm_to_dpi(x));
            }
            b"IEND" => {
                ended = true;
                at = data_end + 4;
                break;
            }
            _ => {}
        }
        at = data_end + 4;
    }
    if !ended || at != png.len() {
        return Err(not_compliant("the PNG does not end with IEND"));
    }
    match dpi {
        None => {
            return Err(not_compliant(
                "the PNG has no pHYs chunk, so it carries no DPI",
            ));
        }
        Some(d) if d != u64::from(target.dpi) => {
            return Err(not_compliant(format!(
                "the PNG says {d} DPI, the portal wants {}",
                target.dpi
            )));
        }
        Some(_) => {}
    }
    check_pixels(png, ImageFormat::Png, target)
}

pub(super) fn verify_pdf(pdf: &[u8], target: &Target) -> Result<(), FitError> {
    if !trim_end(pdf).ends_with(b"%%EOF") {
        return Err(not_compliant("the PDF has no %%EOF trailer"));
    }
    let media_box = format!(
        "/MediaBox [0 0 {} {}]",
        points(target.width, target.dpi),
        points(target.height, target.dpi)
    );
    if find(pdf, media_box.as_bytes(), 0).is_none() {
        return Err(not_compliant(
            "the PDF page size does not match the rule's pixels and DPI",
        ));
    }
    let image = find(pdf, b"/Subtype /Image", 0)
        .ok_or_else(|| not_compliant("the PDF contains no image"))?;
    if find(pdf, b"/Filter /DCTDecode", image).is_none() {
        return Err(not_compliant("the PDF image is not a JPEG"));
    }
    let length_at = find(pdf, b"/Length ", image)
        .ok_or_else(|| not_compliant("the PDF image stream has no length"))?
        + b"/Length ".len();
    let digits = pdf[length_at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let length: usize = std::str::from_utf8(&pdf[length_at..length_at + digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| not_compliant("the PDF image stream length is unreadable"))?;
    let start = find(pdf, b"stream\n", length_at)
        .ok_or_else(|| not_compliant("the PDF image stream is missing"))?
        + b"stream\n".len();
    let jpeg = start
        .checked_add(length)
        .and_then(|end| pdf.get(start..end))
        .ok_or_else(|| not_compliant("the PDF image stream is truncated"))?;
    if !jpeg.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(not_compliant("the PDF image stream is not a JPEG"));
    }
    verify_jpeg(jpeg, target)
}

/// Decode the pixel data with limits sized to the rule, and check the dimensions.
pub(super) fn check_pixels(
    bytes: &[u8],
    format: ImageFormat,
    target: &Target,
) -> Result<(), FitError> {
    let undecodable =
        |e: image::ImageError| not_compliant(format!("the image does not decode: {e}"));
    // Probe with a memory limit only, so a wrong size is reported as such; then hold the decoder
    // to the exact rule size before it allocates pixels.
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_TARGET_PIXELS * 4);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (w, h) = decoder.dimensions();
    if (w, h) != (target.width, target.height) {
        return Err(not_compliant(format!(
            "the image is {w}×{h} pixels, the portal wants {}×{}",
            target.width, target.height
        )));
    }
    limits.max_image_width = Some(target.width);
    limits.max_image_height = Some(target.height);
    decoder.set_limits(limits).map_err(undecodable)?;
    DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    Ok(())
}

pub(crate) fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

pub(super) fn trim_end(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &bytes[..end]
}
