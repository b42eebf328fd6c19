//! Decode stage: turn untrusted upload bytes into an 8-bit sRGB image, safely.
//!
//! The format is sniffed from the content (never from a file name), the header is probed and the
//! dimensions are checked before any pixel buffer is allocated, `image::Limits` are always set,
//! and the whole decode runs on its own thread under a wall-clock deadline. Every later stage
//! sees an upright `Rgb8` image in sRGB:
//!
//! - EXIF orientation is applied (JPEG, PNG, WebP, TIFF); HEIF's own `irot`/`imir`/`clap`
//!   transformations are applied by libheif instead (the HEIF spec makes them authoritative, so
//!   an EXIF orientation inside a HEIC file is ignored, as Apple's own readers do);
//! - an embedded ICC profile (RGB or CMYK) is converted to sRGB with `moxcms`, the pure-Rust
//!   colour management engine the `image` crate itself uses;
//! - CMYK and YCCK JPEGs are decoded to raw ink values (undoing Adobe's APP14 inversion) and
//!   converted through their ICC profile, or with the naive `(1 − C)(1 − K)` formula when they
//!   carry none;
//! - transparency is composited onto white, because portals expect a white background.
//!
//! # Reduced-scale JPEG decoding
//!
//! [`decode_for_target_timed`] knows the size the pipeline will produce. A large JPEG is then
//! decoded at 1/2, 1/4 or 1/8 scale inside the inverse DCT by libjpeg-turbo (`scale_num`/8, as
//! libvips' shrink-on-load does), choosing the smallest scale whose image still covers the target
//! after the aspect crop and keeps about [`quality::ANALYSIS_MAX_SIDE`] pixels on its long side, so
//! QUALITY measures at about the same scale either way. A 12 MP phone photo for a 200 × 230
//! portal photo is then decoded to 504 × 378: the entropy decoding is the same, the IDCT,
//! upsampling, colour conversion and every later stage touch 1/64 of the pixels. (libjpeg-turbo
//! also scales by 3/8, 5/8…; the pipeline only uses powers of two, as before.)
//!
//! libjpeg-turbo comes through the `mozjpeg` crate: mozjpeg-sys compiles MozJPEG's copy of the
//! libjpeg-turbo 2.1 decoder from vendored source with `cc` (no cmake, no system library), with
//! its SIMD code when `nasm` is installed (`scripts/setup.sh` installs it); its `unwinding`
//! feature builds the C with `-fexceptions`, so libjpeg's error exit can unwind to a
//! `catch_unwind` instead of `longjmp`ing. The `turbojpeg` crate was the alternative: it needs the
//! TurboJPEG 3 API, which Debian 12's libturbojpeg (2.1.5) lacks, so it would build its vendored
//! copy with cmake and nasm; nor can TurboJPEG switch off block smoothing, which the scan pruning
//! below needs. `jpeg-decoder`, used before, is about half as fast at entropy decoding, which is
//! most of a reduced decode.
//!
//! libjpeg papers over damage: a truncated file gets grey rows and a warning. The reduced path
//! installs its own error manager (`jpeg_scaled::strict_error_mgr`) that turns every warning, like
//! every error, into a stop: one raised while libjpeg reads the compressed data is
//! [`DecodeError::Damaged`]; one about the headers declines to the full decoder.
//!
//! # Damaged files are refused
//!
//! A decoder's "recovery" (grey rows, skipped blocks) is not the picture the user took, so a file
//! whose data is cut short or corrupt ends in `DECODE_FAILED` with a message saying it is
//! incomplete or damaged ([`DecodeError::Damaged`]), never in a completed job: a JPEG must end
//! with its EOI marker and libjpeg-turbo must read its compressed data without a warning
//! (`jpeg_damage`); PNG, WebP, GIF, TIFF and BMP decoding and I/O errors, and libheif's
//! invalid-input and decoder errors, are damage too. QUALITY looks for a decoder's grey filler as
//! a second line of defence (`quality`'s documentation).
//!
//! # Several pictures in one file
//!
//! The first page of a multi-page TIFF and the first frame of an animated GIF or WebP are used,
//! and [`Decoded::warnings`] says so. TIFFs `image` refuses (64-bit or 16-bit float, 32/64-bit or
//! signed integer samples) are read with the `tiff` crate and scaled to 8 bits
//! (`tiff_samples`).
//!
//! A progressive JPEG spreads its coefficients over several scans. At 1/8, libjpeg-turbo rebuilds
//! luma (and the chroma of 4:4:4 and 4:2:2 files) from the DC coefficient alone, so the AC scans
//! of those components are dropped before decoding (`without_unread_ac_scans`): same pixels, and
//! the entropy decoding of most of the file is saved. At 1/4 and 1/2 its reduced IDCTs read
//! coefficients up to the 63rd, so nothing is dropped there.
//!
//! Everything above still holds on that path: the limits are checked on the header first, the
//! same deadline applies, EXIF orientation and the ICC profile come from the same header reader
//! and are applied the same way. Whenever the reduced path cannot honour something, the full
//! decode runs instead: CMYK/YCCK (the ink values are needed for the CMYK profile), 12-bit
//! samples or arithmetic coding (this libjpeg build has neither), a scale that would not cover
//! the target, a memory estimate over the limit, or any libjpeg error or warning.
//!
//! [`quality::ANALYSIS_MAX_SIDE`]: crate::quality::ANALYSIS_MAX_SIDE

mod cmyk_icc;
mod deadline;
mod error;
mod flatten;
mod frames;
mod heif;
mod jpeg_damage;
mod jpeg_scaled;
mod limits;
mod progressive;
#[cfg(test)]
mod tests;
mod tiff_samples;

use std::io::Cursor;
use std::time::Duration;

use bytes::Bytes;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use rythmiq_domain::sniff::{HeifCodec, sniff_heif};

use cmyk_icc::{decode_jpeg_cmyk, jpeg_is_four_channel, rgb_profile_to_srgb};
use deadline::run_with_deadline;
pub use error::DecodeError;
use error::{clean_message, map_image_error};
pub(crate) use flatten::flatten_on_white;
use heif::decode_heif;
use jpeg_scaled::decode_jpeg_reduced;
pub use limits::DecodeLimits;
use limits::{check_dimensions, check_input_size};

/// Decode `bytes` into an upright 8-bit sRGB image (`DynamicImage::ImageRgb8`), enforcing
/// `limits`.
///
/// Copies the input once so the decode thread can own it; use [`decode_bytes`] to avoid that.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, DecodeError> {
    decode_timed(bytes, limits).map(|(image, _)| image)
}

/// [`decode`], also returning the CPU time the decode thread spent (the caller's own thread
/// clock cannot see it).
pub fn decode_timed(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<(DynamicImage, Duration), DecodeError> {
    // Refuse before copying, so an oversized upload costs nothing.
    check_input_size(bytes.len(), limits)?;
    run_with_deadline(Bytes::copy_from_slice(bytes), limits.clone(), None).map(|d| (d.image, d.cpu))
}

/// [`decode`] for input that is already in a reference-counted buffer (no copy).
pub fn decode_bytes(bytes: Bytes, limits: &DecodeLimits) -> Result<DynamicImage, DecodeError> {
    check_input_size(bytes.len(), limits)?;
    run_with_deadline(bytes, limits.clone(), None).map(|d| d.image)
}

/// A decoded upload, what it cost, and what the user should know about it.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The upright 8-bit sRGB image.
    pub image: DynamicImage,
    /// CPU time the decode thread spent.
    pub cpu: Duration,
    /// What the decode left out or changed that the user should know (a multi-page TIFF's
    /// other pages, an animation's other frames), for the job's `warnings`.
    pub warnings: Vec<String>,
}

/// The upright size the pipeline will turn the image into (the portal rule's pixel size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetSize {
    pub width: u32,
    pub height: u32,
}

/// [`decode_timed`] for an image that will be cropped to `target`'s aspect ratio and shrunk to
/// it: a large JPEG may come back at reduced scale (see the module documentation), never smaller
/// than the target after the crop. Other formats, and JPEGs the reduced path cannot honour, are
/// decoded at full size exactly as [`decode_timed`] does.
pub fn decode_for_target_timed(
    bytes: &[u8],
    limits: &DecodeLimits,
    target: TargetSize,
) -> Result<Decoded, DecodeError> {
    check_input_size(bytes.len(), limits)?;
    run_with_deadline(Bytes::copy_from_slice(bytes), limits.clone(), Some(target))
}

/// The decode itself, on the deadline thread: HEIF to libheif, CMYK JPEGs to the ink path, large
/// JPEGs with a target to the reduced path, everything else to `image`.
fn decode_checked(
    bytes: &[u8],
    limits: &DecodeLimits,
    target: Option<TargetSize>,
) -> Result<(DynamicImage, Vec<String>), DecodeError> {
    // HEIF/AVIF by their `ftyp` brands (the same sniffer the API admits uploads with), which
    // `image` does not know (HEIC) or cannot decode without its `avif` feature.
    if let Some(codec) = sniff_heif(bytes) {
        return decode_heif(bytes, limits, codec == HeifCodec::Av1).map(|img| (img, Vec::new()));
    }

    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| DecodeError::Corrupt("the file could not be read".to_owned()))?;
    let Some(format) = reader.format() else {
        return Err(DecodeError::UnknownFormat);
    };
    if format == ImageFormat::Jpeg {
        // A JPEG cut short is refused before any decoder can fill in its missing rows.
        jpeg_damage::check_complete(bytes)?;
    }

    // Probe with only the memory limit so the header's real dimensions can be reported; the
    // probe reads headers only, and the dimension limits are applied before any pixel buffer.
    let mut probe_limits = Limits::default();
    probe_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(probe_limits);
    let mut decoder = match reader.into_decoder() {
        Ok(decoder) => decoder,
        // Float (64- and 16-bit) and wide integer TIFFs, which `image` refuses up front.
        Err(image::ImageError::Unsupported(_)) if format == ImageFormat::Tiff => {
            let img = tiff_samples::decode_tiff_samples(bytes, limits)?;
            let warnings = frames::warnings(bytes, format, limits)?;
            return Ok((DynamicImage::ImageRgb8(flatten_on_white(img)), warnings));
        }
        Err(e) => return Err(map_image_error(e, format, limits)),
    };

    let (width, height) = decoder.dimensions();
    check_dimensions(width, height, limits)?;
    if decoder.total_bytes() > limits.max_alloc_bytes {
        return Err(DecodeError::MemoryLimit {
            max: limits.max_alloc_bytes,
        });
    }

    let mut full_limits = Limits::default();
    full_limits.max_image_width = Some(limits.max_width);
    full_limits.max_image_height = Some(limits.max_height);
    full_limits.max_alloc = Some(limits.max_alloc_bytes);
    decoder
        .set_limits(full_limits)
        .map_err(|e| map_image_error(e, format, limits))?;

    // A broken EXIF block or ICC profile should not cost the user their upload; the pixels are
    // still fine, so both are best effort.
    let orientation = decoder.orientation().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "ignoring unreadable EXIF orientation");
        Orientation::NoTransforms
    });
    let icc = decoder.icc_profile().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "ignoring unreadable ICC profile");
        None
    });

    let four_channel = format == ImageFormat::Jpeg && jpeg_is_four_channel(bytes);
    let reduced = match target.filter(|_| format == ImageFormat::Jpeg && !four_channel) {
        Some(t) => decode_jpeg_reduced(bytes, limits, (width, height), orientation, t)?,
        None => None,
    };
    if format == ImageFormat::Jpeg && reduced.is_none() {
        // zune-jpeg would fill damaged data in; libjpeg-turbo tells (`jpeg_damage`).
        jpeg_damage::check_data(bytes)?;
    }
    let rgb = if four_channel {
        // `image` converts CMYK to RGB itself but throws the ink values away, so the ICC
        // profile (always a CMYK one here) could not be applied afterwards.
        drop(decoder);
        decode_jpeg_cmyk(bytes, limits, icc.as_deref())?
    } else if let Some(mut rgb) = reduced {
        drop(decoder);
        if let Some(icc) = icc.as_deref() {
            rgb_profile_to_srgb(&mut rgb, icc);
        }
        rgb
    } else {
        let img =
            DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, format, limits))?;
        let mut rgb = flatten_on_white(img);
        if let Some(icc) = icc.as_deref() {
            rgb_profile_to_srgb(&mut rgb, icc);
        }
        rgb
    };
    let warnings = frames::warnings(bytes, format, limits)?;
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    Ok((img, warnings))
}

/// Entry points for the decode fuzz harness (`tests/decode_fuzz.rs`): the decoders *without* the
/// deadline thread and its panic guard, so that a panic fails the harness instead of becoming
/// [`DecodeError::Corrupt`]. Not for production use.
#[doc(hidden)]
pub mod fuzzing {
    use image::{DynamicImage, RgbImage};

    use super::{DecodeError, DecodeLimits};

    /// The whole decode at full size, on the calling thread, panics included.
    pub fn decode_unguarded(
        bytes: &[u8],
        limits: &DecodeLimits,
    ) -> Result<DynamicImage, DecodeError> {
        super::decode_checked(bytes, limits, None).map(|(image, _)| image)
    }

    /// The header checks [`decode_unguarded`] applies to an image of `width`×`height`.
    pub fn check_dimensions(
        width: u32,
        height: u32,
        limits: &DecodeLimits,
    ) -> Result<(), DecodeError> {
        super::check_dimensions(width, height, limits)
    }

    /// libjpeg's decode of a `stored`-size JPEG at `eighths`/8 scale, to `want` pixels, after the
    /// progressive-scan pruning at 1/8, as the reduced path runs it (its unwinding included).
    pub fn decode_jpeg_scaled(
        bytes: &[u8],
        stored: (u32, u32),
        eighths: u32,
        want: (u32, u32),
    ) -> Result<RgbImage, String> {
        let pruned = (eighths == 1)
            .then(|| super::progressive::without_unread_ac_scans(bytes))
            .flatten();
        super::jpeg_scaled::decode_jpeg_scaled(
            pruned.as_deref().unwrap_or(bytes),
            stored,
            eighths,
            want,
        )
    }
}
