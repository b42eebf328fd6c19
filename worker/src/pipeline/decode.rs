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
//! installs its own error manager ([`strict_error_mgr`]) that turns every warning, like every
//! error, into a decline; the full decoder (zune-jpeg, through `image`) then decides whether the
//! file is broken, with the messages users already get.
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
//! [`quality::ANALYSIS_MAX_SIDE`]: super::quality::ANALYSIS_MAX_SIDE

use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use image::error::{LimitErrorKind, UnsupportedErrorKind};
use image::metadata::Orientation;
use image::{
    DynamicImage, GrayImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits, Rgb,
    RgbImage,
};
use rythmiq_shared::domain::ErrorCode;

/// Formats named in user-facing messages.
#[cfg(feature = "heic")]
const ACCEPTED: &str = "JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC";
#[cfg(not(feature = "heic"))]
const ACCEPTED: &str = "JPEG, PNG, WebP, TIFF, BMP or GIF";

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
    run_with_deadline(Bytes::copy_from_slice(bytes), limits.clone(), None)
}

/// [`decode`] for input that is already in a reference-counted buffer (no copy).
pub fn decode_bytes(bytes: Bytes, limits: &DecodeLimits) -> Result<DynamicImage, DecodeError> {
    check_input_size(bytes.len(), limits)?;
    run_with_deadline(bytes, limits.clone(), None).map(|(image, _)| image)
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
) -> Result<(DynamicImage, Duration), DecodeError> {
    check_input_size(bytes.len(), limits)?;
    run_with_deadline(Bytes::copy_from_slice(bytes), limits.clone(), Some(target))
}

fn check_input_size(len: usize, limits: &DecodeLimits) -> Result<(), DecodeError> {
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

/// Decode threads that passed their deadline and are still running. Their memory is only
/// returned when they finish, so we stop starting new decodes while too many linger.
static OVERDUE_DECODES: AtomicUsize = AtomicUsize::new(0);
/// Most overdue decodes tolerated at once (each may hold up to `max_alloc_bytes`).
const MAX_OVERDUE_DECODES: usize = 2;

const RUNNING: u8 = 0;
const ABANDONED: u8 = 1;
const FINISHED: u8 = 2;

/// Run the decode on a dedicated thread and wait at most `limits.max_decode_time` for it.
///
/// None of the decoders (image-rs, zune-jpeg, libheif 1.15) can be cancelled, so on timeout the
/// thread is left to finish on its own and its result is dropped; the limits on pixels and
/// memory bound what it can still consume.
fn run_with_deadline(
    bytes: Bytes,
    limits: DecodeLimits,
    target: Option<TargetSize>,
) -> Result<(DynamicImage, Duration), DecodeError> {
    if OVERDUE_DECODES.load(Ordering::SeqCst) >= MAX_OVERDUE_DECODES {
        return Err(DecodeError::Unavailable(
            "too many earlier decodes are still running past their time limit".to_owned(),
        ));
    }
    let deadline = limits.max_decode_time;
    let (tx, rx) = mpsc::sync_channel(1);
    let state = Arc::new(AtomicU8::new(RUNNING));
    let thread_state = Arc::clone(&state);
    let spawned = thread::Builder::new()
        .name("rythmiq-decode".to_owned())
        // Decoders recurse little, but 8 MiB (the main thread's default) costs only address space.
        .stack_size(8 * 1024 * 1024)
        .spawn(move || {
            // Third-party decoders have panicked on hostile input before; a bad upload must fail
            // the job, not take the worker down with it.
            let cpu = cpu_time::ThreadTime::now();
            let result =
                panic::catch_unwind(AssertUnwindSafe(|| decode_checked(&bytes, &limits, target)))
                    .unwrap_or_else(|_| {
                        Err(DecodeError::Corrupt(
                            "the decoder rejected malformed data".to_owned(),
                        ))
                    })
                    .map(|image| (image, cpu.elapsed()));
            drop(bytes);
            // The receiver is gone after a timeout; the image is then simply dropped.
            if tx.send(result).is_err() {
                tracing::debug!("dropping the result of a decode that passed its deadline");
            }
            if thread_state.swap(FINISHED, Ordering::SeqCst) == ABANDONED {
                OVERDUE_DECODES.fetch_sub(1, Ordering::SeqCst);
            }
        });
    if let Err(e) = spawned {
        return Err(DecodeError::Unavailable(format!(
            "could not start a decode thread: {e}"
        )));
    }
    match rx.recv_timeout(deadline) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            // Count first, so the thread's decrement can never run before this increment.
            OVERDUE_DECODES.fetch_add(1, Ordering::SeqCst);
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // It finished just now; take its result after all.
                OVERDUE_DECODES.fetch_sub(1, Ordering::SeqCst);
                return rx
                    .try_recv()
                    .unwrap_or(Err(DecodeError::Timeout { limit: deadline }));
            }
            tracing::warn!(
                limit_s = deadline.as_secs_f64(),
                overdue = OVERDUE_DECODES.load(Ordering::SeqCst),
                "decode passed its deadline; abandoning its thread"
            );
            Err(DecodeError::Timeout { limit: deadline })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(DecodeError::Corrupt(
            "the decoder stopped unexpectedly".to_owned(),
        )),
    }
}

/// What the content looks like, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    /// An ISO-BMFF file whose brands say HEIF (HEVC) or AVIF; both go through libheif.
    Heif { avif: bool },
    /// Anything else; left to `image`'s own magic-number guess.
    Other,
}

/// Recognise HEIF/AVIF by the `ftyp` box, which `image` does not know (HEIC) or cannot decode
/// without its `avif` feature.
fn sniff(bytes: &[u8]) -> Sniffed {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return Sniffed::Other;
    }
    let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let box_len = usize::try_from(box_len)
        .unwrap_or(usize::MAX)
        .clamp(16, bytes.len().min(4096));
    // Major brand at 8..12, minor version at 12..16, compatible brands from 16.
    let brands = std::iter::once(&bytes[8..12]).chain(bytes[16..box_len].chunks_exact(4));
    let mut heif = false;
    let mut avif = false;
    for brand in brands {
        match brand {
            b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"hevm" | b"hevs" => {
                heif = true;
            }
            b"avif" | b"avis" => avif = true,
            // `mif1`/`msf1` alone say "some HEIF"; the codec brands above say which.
            b"mif1" | b"msf1" | b"miaf" => {}
            _ => {}
        }
    }
    if heif {
        Sniffed::Heif { avif: false }
    } else if avif {
        Sniffed::Heif { avif: true }
    } else if bytes[8..12] == *b"mif1" || bytes[8..12] == *b"msf1" {
        Sniffed::Heif { avif: false }
    } else {
        Sniffed::Other
    }
}

fn decode_checked(
    bytes: &[u8],
    limits: &DecodeLimits,
    target: Option<TargetSize>,
) -> Result<DynamicImage, DecodeError> {
    if let Sniffed::Heif { avif } = sniff(bytes) {
        return decode_heif(bytes, limits, avif);
    }

    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| DecodeError::Corrupt("the file could not be read".to_owned()))?;
    let Some(format) = reader.format() else {
        return Err(DecodeError::UnknownFormat);
    };

    // Probe with only the memory limit so the header's real dimensions can be reported; the
    // probe reads headers only, and the dimension limits are applied before any pixel buffer.
    let mut probe_limits = Limits::default();
    probe_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(probe_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(e, limits))?;

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
        .map_err(|e| map_image_error(e, limits))?;

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

    let rgb = if format == ImageFormat::Jpeg && jpeg_is_four_channel(bytes) {
        // `image` converts CMYK to RGB itself but throws the ink values away, so the ICC
        // profile (always a CMYK one here) could not be applied afterwards.
        drop(decoder);
        decode_jpeg_cmyk(bytes, limits, icc.as_deref())?
    } else if let Some(mut rgb) = target
        .filter(|_| format == ImageFormat::Jpeg)
        .and_then(|t| decode_jpeg_reduced(bytes, limits, (width, height), orientation, t))
    {
        drop(decoder);
        if let Some(icc) = icc.as_deref() {
            rgb_profile_to_srgb(&mut rgb, icc);
        }
        rgb
    } else {
        let img = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, limits))?;
        let mut rgb = flatten_on_white(img);
        if let Some(icc) = icc.as_deref() {
            rgb_profile_to_srgb(&mut rgb, icc);
        }
        rgb
    };
    let mut img = DynamicImage::ImageRgb8(rgb);
    img.apply_orientation(orientation);
    Ok(img)
}

/// Reject images whose announced size breaks the limits (or that have no pixels at all).
fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
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

/// Whether a JPEG's frame has four components (CMYK or YCCK), read from its headers only.
fn jpeg_is_four_channel(bytes: &[u8]) -> bool {
    let mut probe = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        zune_core::options::DecoderOptions::default().set_strict_mode(false),
    );
    if probe.decode_headers().is_err() {
        return false;
    }
    matches!(
        probe.input_colorspace(),
        Some(zune_core::colorspace::ColorSpace::CMYK | zune_core::colorspace::ColorSpace::YCCK)
    )
}

/// Whether the JPEG carries an Adobe APP14 segment, found by walking the marker segments before
/// the first scan. Adobe's CMYK JPEGs store inverted ink values (255 = no ink); others do not.
fn jpeg_has_adobe_marker(bytes: &[u8]) -> bool {
    let mut pos = 2; // after SOI
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            return false;
        }
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return false; // start of scan or end of image: no more header segments
        }
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        let body = pos + 4;
        if marker == 0xEE && bytes.get(body..body + 5) == Some(b"Adobe".as_slice()) {
            return true;
        }
        pos += 2 + len;
    }
    false
}

/// Decode a CMYK or YCCK JPEG to sRGB through its ICC profile (or naively without one).
fn decode_jpeg_cmyk(
    bytes: &[u8],
    limits: &DecodeLimits,
    icc: Option<&[u8]>,
) -> Result<RgbImage, DecodeError> {
    use zune_core::colorspace::ColorSpace as Zcs;

    let corrupt =
        |e: zune_jpeg::errors::DecodeErrors| DecodeError::Corrupt(clean_message(&format!("{e:?}")));
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::try_from(limits.max_width).unwrap_or(usize::MAX))
        .set_max_height(usize::try_from(limits.max_height).unwrap_or(usize::MAX));
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    decoder.decode_headers().map_err(corrupt)?;
    let input = decoder
        .input_colorspace()
        .ok_or_else(|| DecodeError::Corrupt("the JPEG has no frame header".to_owned()))?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| DecodeError::Corrupt("the JPEG has no frame header".to_owned()))?;
    let width = u32::try_from(w).map_err(|_| DecodeError::Corrupt("bad width".to_owned()))?;
    let height = u32::try_from(h).map_err(|_| DecodeError::Corrupt("bad height".to_owned()))?;
    check_dimensions(width, height, limits)?;
    // Four bytes of ink per pixel, then three of RGB.
    if u64::from(width) * u64::from(height) * 7 > limits.max_alloc_bytes {
        return Err(DecodeError::MemoryLimit {
            max: limits.max_alloc_bytes,
        });
    }
    // Asking for the input colour space makes zune-jpeg hand back the four planes untouched.
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(input));
    let mut samples = decoder.decode().map_err(corrupt)?;
    let expected = w * h * 4;
    if samples.len() < expected {
        return Err(DecodeError::Corrupt(
            "the JPEG decoded to fewer samples than its header announces".to_owned(),
        ));
    }
    samples.truncate(expected);

    // Turn the stored samples into ink amounts (0 = no ink), as ICC CMYK profiles expect.
    match input {
        Zcs::YCCK => {
            // YCCK is YCbCr of the inverted C, M, Y (libjpeg's `ycck_cmyk_convert`), plus an
            // inverted K; so the YCbCr→RGB result *is* the C, M, Y ink.
            for px in samples.chunks_exact_mut(4) {
                let [c, m, y] = ycbcr_to_rgb(px[0], px[1], px[2]);
                px[0] = c;
                px[1] = m;
                px[2] = y;
                px[3] = 255 - px[3];
            }
        }
        _ if jpeg_has_adobe_marker(bytes) => {
            for v in &mut samples {
                *v = 255 - *v;
            }
        }
        _ => {}
    }

    let mut rgb = vec![0u8; w * h * 3];
    if !icc.is_some_and(|p| cmyk_profile_to_srgb(&samples, &mut rgb, p)) {
        for (dst, ink) in rgb.chunks_exact_mut(3).zip(samples.chunks_exact(4)) {
            let k = 255 - u16::from(ink[3]);
            for (d, &c) in dst.iter_mut().zip(&ink[..3]) {
                let v = (255 - u16::from(c)) * k / 255;
                *d = u8::try_from(v).unwrap_or(u8::MAX);
            }
        }
    }
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| {
        DecodeError::Corrupt("the JPEG's pixel buffer has the wrong size".to_owned())
    })
}

/// Long side, in pixels, a reduced decode keeps at least (unless the original is smaller): near
/// QUALITY's analysis size, so its signals are measured at about the scale they were calibrated
/// at. A little under 512 so that 8 and 12 MP photos (3,264 and 4,032 pixels wide) may use 1/8.
const REDUCED_MIN_LONG_SIDE: u32 = 400;

/// Whether an EXIF orientation swaps width and height.
fn swaps_axes(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The smallest IDCT scale (in eighths: 1, 2 or 4) at which a `stored` JPEG still covers
/// `target` after the aspect crop, and keeps [`REDUCED_MIN_LONG_SIDE`]; with the scaled size,
/// in stored orientation. `None` when only the full size (8/8) would do.
fn reduced_scale(
    stored: (u32, u32),
    orientation: Orientation,
    target: TargetSize,
) -> Option<(u32, (u32, u32))> {
    let (sw, sh) = stored;
    // The target in the stored frame: a 90° rotation is applied after decoding.
    let (tw, th) = if swaps_axes(orientation) {
        (target.height, target.width)
    } else {
        (target.width, target.height)
    };
    if tw == 0 || th == 0 {
        return None;
    }
    let min_long = sw.max(sh).min(REDUCED_MIN_LONG_SIDE);
    [1u32, 2, 4].into_iter().find_map(|eighths| {
        // libjpeg's rounding (`jdiv_round_up`): ceil(len × eighths / 8).
        let scaled = |len: u32| (u64::from(len) * u64::from(eighths)).div_ceil(8);
        let (w, h) = (scaled(sw), scaled(sh));
        // The largest crop with the target's aspect keeps one full side, so it reaches the
        // target in both directions exactly when the whole image does.
        let covers = w >= u64::from(tw) && h >= u64::from(th);
        let size = (u32::try_from(w).ok()?, u32::try_from(h).ok()?);
        (covers && size.0.max(size.1) >= min_long).then_some((eighths, size))
    })
}

/// Decode a three-component (or grey) JPEG at the reduced scale [`reduced_scale`] picks, as RGB8
/// in stored orientation (the caller applies orientation and ICC as for a full decode).
///
/// `None` means "decode at full size instead": the scale would be 8/8, the file is CMYK or 12-bit,
/// the memory estimate breaks the limit, or libjpeg-turbo stopped on an error or warned about the
/// data (see [`strict_error_mgr`]).
fn decode_jpeg_reduced(
    bytes: &[u8],
    limits: &DecodeLimits,
    stored: (u32, u32),
    orientation: Orientation,
    target: TargetSize,
) -> Option<RgbImage> {
    let (eighths, want) = reduced_scale(stored, orientation, target)?;
    // libjpeg keeps a progressive file's coefficients at full size (two bytes a sample, at most
    // three full-resolution components) besides its output.
    let coefficients = u64::from(stored.0) * u64::from(stored.1) * 6;
    let output = u64::from(want.0) * u64::from(want.1) * 3;
    if coefficients + output > limits.max_alloc_bytes {
        return None;
    }
    // At 1/8 a progressive file's AC scans that the 1 × 1 IDCT never reads are dropped first:
    // the pixels are the same, the entropy decoding of those scans is saved.
    let pruned = (eighths == 1)
        .then(|| without_unread_ac_scans(bytes))
        .flatten();
    match decode_jpeg_scaled(pruned.as_deref().unwrap_or(bytes), stored, eighths, want) {
        Ok(rgb) => Some(rgb),
        Err(reason) => {
            tracing::debug!(
                reason,
                "reduced JPEG decode declined; decoding at full size"
            );
            None
        }
    }
}

/// A progressive JPEG without the AC scans of the components that libjpeg-turbo rebuilds from
/// their DC coefficient alone at 1/8 scale: at most ~94 % of a photo's entropy-coded bytes, and
/// the 1/8 decode of what is left has the same pixels (block smoothing, which would estimate the
/// missing coefficients, is off in [`decode_jpeg_scaled`]).
///
/// Which components those are follows libjpeg-turbo's `jpeg_core_output_dimensions`: it scales a
/// subsampled component's IDCT up instead of upsampling it when the sampling factors allow, so
/// the chroma of a 4:2:0 file is rebuilt with a 2 × 2 IDCT, which reads AC coefficients; those
/// scans are kept. Luma, and the chroma of 4:4:4 and 4:2:2 files, use the 1 × 1 IDCT (DC only).
///
/// `None`, meaning "decode the file as it is", unless the file is progressive (SOF2), its segments
/// and scans can all be walked up to its EOI, and at least one scan was dropped. Only marker
/// framing is read here; the decoder still checks everything it always did on what is kept.
fn without_unread_ac_scans(jpeg: &[u8]) -> Option<Vec<u8>> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut kept = Vec::with_capacity(jpeg.len() / 8);
    kept.extend_from_slice(&jpeg[..2]);
    // Component ids whose 1/8 decode reads the DC coefficient only.
    let mut dc_only: Option<Vec<u8>> = None;
    let (mut pos, mut dropped) = (2, false);
    loop {
        if *jpeg.get(pos)? != 0xFF {
            return None;
        }
        let marker = *jpeg.get(pos + 1)?;
        match marker {
            0xFF => {
                pos += 1; // fill byte
                continue;
            }
            0xD9 => break,
            // Markers without a length (SOI, TEM, RSTn) have no place between segments.
            0x01 | 0xD0..=0xD8 => return None,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([
            *jpeg.get(pos + 2)?,
            *jpeg.get(pos + 3)?,
        ]));
        let end = pos + 2 + len;
        if len < 2 || end > jpeg.len() {
            return None;
        }
        match marker {
            0xC2 if dc_only.is_none() => dc_only = Some(dc_only_components(&jpeg[pos + 4..end])?),
            // Any other frame type (baseline, lossless, arithmetic…), or a second frame.
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return None,
            _ => {}
        }
        if marker == 0xDA {
            let dc_only = dc_only.as_deref()?;
            // Ns, then two bytes per component (id first), then Ss (the band's first coefficient).
            let components = usize::from(*jpeg.get(pos + 4)?);
            let band_start = *jpeg.get(pos + 5 + 2 * components)?;
            let data_end = end_of_entropy_data(jpeg, end)?;
            // AC scans have exactly one component (ITU T.81, G.1.1.1.1).
            let unread = band_start > 0 && components == 1 && dc_only.contains(jpeg.get(pos + 5)?);
            if unread {
                dropped = true;
            } else {
                kept.extend_from_slice(&jpeg[pos..data_end]);
            }
            pos = data_end;
        } else {
            kept.extend_from_slice(&jpeg[pos..end]);
            pos = end;
        }
    }
    kept.extend_from_slice(&[0xFF, 0xD9]);
    dropped.then_some(kept)
}

/// The ids of the components a 1/8 decode rebuilds from DC alone, from a SOF segment's body
/// (precision, height, width, Nf, then id, HiVi, Tq per component). libjpeg-turbo doubles a
/// component's IDCT size while both of its sampling factors divide the largest ones twice over.
fn dc_only_components(sof: &[u8]) -> Option<Vec<u8>> {
    let count = usize::from(*sof.get(5)?);
    let components = sof.get(6..6 + 3 * count)?;
    let factors = |c: &[u8]| (u32::from(c[1] >> 4), u32::from(c[1] & 0x0F));
    let (mut max_h, mut max_v) = (0, 0);
    for c in components.chunks_exact(3) {
        let (h, v) = factors(c);
        if h == 0 || v == 0 {
            return None;
        }
        (max_h, max_v) = (max_h.max(h), max_v.max(v));
    }
    Some(
        components
            .chunks_exact(3)
            .filter(|c| {
                let (h, v) = factors(c);
                max_h % (2 * h) != 0 || max_v % (2 * v) != 0
            })
            .map(|c| c[0])
            .collect(),
    )
}

/// Where a scan's entropy-coded data starting at `from` ends: the first 0xFF that is neither a
/// stuffed zero byte nor a restart marker.
fn end_of_entropy_data(jpeg: &[u8], from: usize) -> Option<usize> {
    let mut pos = from;
    loop {
        pos += jpeg.get(pos..)?.iter().position(|&b| b == 0xFF)?;
        match *jpeg.get(pos + 1)? {
            0x00 | 0xD0..=0xD7 => pos += 2,
            _ => return Some(pos),
        }
    }
}

/// Why libjpeg stopped a reduced decode: carried by the unwind out of its callbacks.
#[derive(Debug, Clone, Copy)]
enum LibjpegStop {
    /// `error_exit`: the data cannot be decoded (12-bit, arithmetic coding, bad tables…).
    Error,
    /// `emit_message` with a negative level: libjpeg would go on with made-up data (a truncated
    /// file gets grey rows, a damaged scan skips ahead), which the full decoder should judge.
    Warning,
}

/// libjpeg's error manager for reduced decodes: errors *and warnings* unwind out of libjpeg
/// (built with `-fexceptions`, mozjpeg-sys' `unwinding` feature) to [`decode_jpeg_scaled`]'s
/// `catch_unwind`. `mozjpeg`'s own manager silences warnings, so a truncated file would decode
/// "successfully" with grey rows; here any warning sends the file to the full decoder, which
/// accepts or rejects it with the messages users already get. No message text is needed, so the
/// message tables stay empty.
fn strict_error_mgr() -> mozjpeg_sys::jpeg_error_mgr {
    mozjpeg_sys::jpeg_error_mgr {
        error_exit: Some(libjpeg_error_exit),
        emit_message: Some(libjpeg_emit_message),
        output_message: Some(libjpeg_ignore),
        format_message: Some(libjpeg_format_message),
        reset_error_mgr: Some(libjpeg_ignore),
        msg_code: 0,
        msg_parm: mozjpeg_sys::msg_parm_union::default(),
        trace_level: 0,
        num_warnings: 0,
        jpeg_message_table: std::ptr::null(),
        last_jpeg_message: 0,
        addon_message_table: std::ptr::null(),
        first_addon_message: 0,
        last_addon_message: 0,
    }
}

extern "C-unwind" fn libjpeg_error_exit(_cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    // `resume_unwind` skips the panic hook: a bad upload is not worth a log line with a backtrace.
    panic::resume_unwind(Box::new(LibjpegStop::Error));
}

extern "C-unwind" fn libjpeg_emit_message(
    _cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    // Levels 0 and up are trace messages (off); -1 is a warning about the data.
    if level < 0 {
        panic::resume_unwind(Box::new(LibjpegStop::Warning));
    }
}

extern "C-unwind" fn libjpeg_ignore(_cinfo: &mut mozjpeg_sys::jpeg_common_struct) {}

extern "C-unwind" fn libjpeg_format_message(
    _cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    _buffer: &[u8; 80],
) {
}

/// Decode `bytes` at `eighths`/8 scale with libjpeg-turbo's DCT scaling, as RGB8 of size `want`
/// (grey files are expanded to three equal channels by libjpeg).
///
/// The caller has checked the header (dimensions, memory) with the full decoder's reader; this
/// checks that libjpeg reads the same frame before trusting it.
fn decode_jpeg_scaled(
    bytes: &[u8],
    stored: (u32, u32),
    eighths: u32,
    want: (u32, u32),
) -> Result<RgbImage, String> {
    use mozjpeg::ColorSpace;

    let scale = u8::try_from(eighths)
        .ok()
        .filter(|s| (1..=8).contains(s))
        .ok_or_else(|| format!("scale {eighths}/8"))?;
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| -> Result<RgbImage, String> {
        let mut decoder = mozjpeg::Decompress::builder()
            .with_err(strict_error_mgr())
            .from_mem(bytes)
            .map_err(|e| e.to_string())?;
        let as_usize = |v: u32| usize::try_from(v).ok();
        let size = decoder.size();
        if (Some(size.0), Some(size.1)) != (as_usize(stored.0), as_usize(stored.1)) {
            return Err("the two JPEG readers disagree on the size".to_owned());
        }
        let colour = decoder.color_space();
        if !matches!(
            colour,
            ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB | ColorSpace::JCS_GRAYSCALE
        ) {
            return Err(format!("colour space {colour:?}"));
        }
        decoder.scale(scale);
        // Block smoothing only changes anything for a progressive file with missing AC scans
        // (the pruned ones: it would estimate coefficients the 1 × 1 IDCT never reads anyway).
        decoder.do_block_smoothing(false);
        let mut started = decoder.rgb().map_err(|e| e.to_string())?;
        let got = (started.width(), started.height());
        if (Some(got.0), Some(got.1)) != (as_usize(want.0), as_usize(want.1)) {
            return Err(format!(
                "scaled to {}×{}, wanted {}×{}",
                got.0, got.1, want.0, want.1
            ));
        }
        let rgb: Vec<u8> = started.read_scanlines().map_err(|e| e.to_string())?;
        started.finish().map_err(|e| e.to_string())?;
        RgbImage::from_raw(want.0, want.1, rgb).ok_or_else(|| "wrong buffer size".to_owned())
    }));
    decoded.unwrap_or_else(|payload| {
        Err(match payload.downcast_ref::<LibjpegStop>() {
            Some(stop) => format!("libjpeg stopped: {stop:?}"),
            None => "libjpeg panicked".to_owned(),
        })
    })
}

/// JFIF (full-range BT.601) YCbCr to RGB.
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let y = f32::from(y);
    let cb = f32::from(cb) - 128.0;
    let cr = f32::from(cr) - 128.0;
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        clamp(y + 1.402 * cr),
        clamp(y - 0.344_136 * cb - 0.714_136 * cr),
        clamp(y + 1.772 * cb),
    ]
}

/// Convert CMYK ink samples to sRGB through `icc`; false (leaving `rgb` untouched) when the
/// profile is unusable, so the caller can fall back to the naive formula.
fn cmyk_profile_to_srgb(cmyk: &[u8], rgb: &mut [u8], icc: &[u8]) -> bool {
    let transform = moxcms::ColorProfile::new_from_slice(icc).and_then(|profile| {
        if profile.color_space != moxcms::DataColorSpace::Cmyk {
            return Err(moxcms::CmsError::InvalidProfile);
        }
        // moxcms reads CMYK8 with the four-channel `Rgba` layout.
        profile.create_transform_8bit(
            moxcms::Layout::Rgba,
            &moxcms::ColorProfile::new_srgb(),
            moxcms::Layout::Rgb,
            moxcms::TransformOptions::default(),
        )
    });
    match transform.and_then(|t| t.transform(cmyk, rgb)) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring unusable CMYK ICC profile");
            false
        }
    }
}

/// Convert `rgb` from the colour space described by `icc` to sRGB, in place. Best effort:
/// a profile that is not RGB, is already sRGB, or cannot be parsed leaves the pixels alone.
fn rgb_profile_to_srgb(rgb: &mut RgbImage, icc: &[u8]) {
    let profile = match moxcms::ColorProfile::new_from_slice(icc) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring unreadable ICC profile");
            return;
        }
    };
    if profile.color_space != moxcms::DataColorSpace::Rgb || is_srgb(&profile) {
        // Grey profiles on RGB data mean the image was expanded from grey: nothing to do.
        return;
    }
    let srgb = moxcms::ColorProfile::new_srgb();
    let transform = match profile.create_transform_8bit(
        moxcms::Layout::Rgb,
        &srgb,
        moxcms::Layout::Rgb,
        moxcms::TransformOptions::default(),
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::debug!(error = %e, "ignoring unusable ICC profile");
            return;
        }
    };
    // Row by row so the scratch buffer stays small whatever the image size.
    let row_len = usize::try_from(rgb.width()).unwrap_or(0) * 3;
    if row_len == 0 {
        return;
    }
    let mut out = vec![0u8; row_len];
    for row in rgb.chunks_exact_mut(row_len) {
        if let Err(e) = transform.transform(row, &mut out) {
            tracing::debug!(error = %e, "ICC transform failed; keeping the original colours");
            return;
        }
        row.copy_from_slice(&out);
    }
}

/// Whether a profile has sRGB's primaries, so converting it would only cost time (most Android
/// JPEGs and many scans embed an sRGB profile). Tone curves are not compared: sRGB-primaries
/// profiles with another curve are rare, and the difference would be slight.
fn is_srgb(profile: &moxcms::ColorProfile) -> bool {
    let srgb = moxcms::ColorProfile::new_srgb();
    let close = |a: &moxcms::Xyzd, b: &moxcms::Xyzd| {
        (a.x - b.x).abs() < 0.003 && (a.y - b.y).abs() < 0.003 && (a.z - b.z).abs() < 0.003
    };
    profile.lut_a_to_b_perceptual.is_none()
        && close(&profile.red_colorant, &srgb.red_colorant)
        && close(&profile.green_colorant, &srgb.green_colorant)
        && close(&profile.blue_colorant, &srgb.blue_colorant)
}

/// Decode a HEIF (HEVC) or AVIF image through libheif.
#[cfg(feature = "heic")]
fn decode_heif(
    bytes: &[u8],
    limits: &DecodeLimits,
    avif: bool,
) -> Result<DynamicImage, DecodeError> {
    use image::RgbaImage;
    use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

    let format = if avif { "AVIF" } else { "HEIF" };
    let corrupt = |e: libheif_rs::HeifError| {
        DecodeError::Corrupt(clean_message(&format!("{format}: {}", e.message)))
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
fn decode_heif(
    _bytes: &[u8],
    _limits: &DecodeLimits,
    avif: bool,
) -> Result<DynamicImage, DecodeError> {
    Err(DecodeError::UnsupportedFormat {
        format: if avif { "AVIF" } else { "HEIF" }.to_owned(),
    })
}

/// Convert any colour type to 8-bit RGB, compositing transparency onto white.
pub(crate) fn flatten_on_white(img: DynamicImage) -> RgbImage {
    // Grey (scans, signatures) is expanded directly: `image`'s generic conversion costs ~10 ns a
    // pixel, 45 ms for an A4 page at 200 DPI.
    let img = match img {
        DynamicImage::ImageLuma8(grey) => return grey_to_rgb(&grey),
        DynamicImage::ImageLumaA8(grey) => {
            let mut rgb = RgbImage::new(grey.width(), grey.height());
            for (dst, px) in rgb.chunks_exact_mut(3).zip(grey.as_raw().chunks_exact(2)) {
                dst.fill(blend_on_white(px[0], px[1]));
            }
            return rgb;
        }
        other => other,
    };
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let blend = |c: u8| blend_on_white(c, src[3]);
        *dst = Rgb([blend(src[0]), blend(src[1]), blend(src[2])]);
    }
    out
}

/// One channel value with coverage `alpha` composited onto white.
fn blend_on_white(c: u8, alpha: u8) -> u8 {
    let alpha = u16::from(alpha);
    let v = (u16::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// A grey image as RGB with three equal channels.
fn grey_to_rgb(grey: &GrayImage) -> RgbImage {
    let mut rgb = RgbImage::new(grey.width(), grey.height());
    for (dst, &v) in rgb.chunks_exact_mut(3).zip(grey.as_raw()) {
        dst.fill(v);
    }
    rgb
}

fn map_image_error(err: ImageError, limits: &DecodeLimits) -> DecodeError {
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
        other => DecodeError::Corrupt(clean_message(&other.to_string())),
    }
}

/// Keep decoder messages short and printable: they end up in API responses and logs, and must
/// never echo raw file bytes.
fn clean_message(msg: &str) -> String {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder, Rgba};
    use std::time::{Duration, Instant};

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let mut typed = kind.to_vec();
        typed.extend_from_slice(data);
        out.extend_from_slice(&typed);
        out.extend_from_slice(&crc32(&typed).to_be_bytes());
    }

    fn ihdr(width: u32, height: u32, depth: u8, colour: u8) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&width.to_be_bytes());
        d.extend_from_slice(&height.to_be_bytes());
        d.extend_from_slice(&[depth, colour, 0, 0, 0]);
        d
    }

    /// zlib stream made of stored (uncompressed) deflate blocks, so tests need no compressor.
    fn zlib_stored(raw: &[u8]) -> Vec<u8> {
        let mut out = vec![0x78, 0x01];
        let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
        for (i, block) in blocks.iter().enumerate() {
            out.push(u8::from(i + 1 == blocks.len()));
            let len = u16::try_from(block.len()).unwrap();
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&(!len).to_le_bytes());
            out.extend_from_slice(block);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &x in raw {
            a = (a + u32::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        out.extend_from_slice(&((b << 16) | a).to_be_bytes());
        out
    }

    fn jpeg_bytes(img: &RgbImage) -> Vec<u8> {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(img)
            .unwrap();
        out
    }

    fn photo(width: u32, height: u32) -> RgbImage {
        let mut seed = 0x9E37_79B9u32;
        RgbImage::from_fn(width, height, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let n = (seed % 32) as u8;
            Rgb([
                ((x * 255 / width) as u8).saturating_add(n),
                ((y * 255 / height) as u8).saturating_add(n),
                128u8.saturating_add(n),
            ])
        })
    }

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    #[test]
    fn empty_is_payload_invalid() {
        let err = decode(&[], &limits()).unwrap_err();
        assert_eq!(err, DecodeError::Empty);
        assert!(err.is_payload_invalid());
        assert_eq!(err.code(), ErrorCode::PayloadInvalid);
    }

    #[test]
    fn oversized_input_is_payload_invalid() {
        let l = DecodeLimits {
            max_input_bytes: 10,
            ..DecodeLimits::default()
        };
        let err = decode(&[0u8; 11], &l).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { size: 11, max: 10 }));
        assert!(err.is_payload_invalid());
    }

    #[test]
    fn text_is_unknown_format_and_message_has_no_content() {
        let secret = b"hello, this is a secret text file and not an image";
        let err = decode(secret, &limits()).unwrap_err();
        assert_eq!(err, DecodeError::UnknownFormat);
        assert!(err.is_payload_invalid());
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn random_bytes_do_not_panic() {
        let mut seed = 12_345u64;
        for len in [1usize, 2, 7, 16, 100, 4096, 70_000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (seed >> 56) as u8
                })
                .collect();
            assert!(decode(&bytes, &limits()).is_err());
            // Random bytes behind real magic numbers reach the decoders themselves.
            for magic in [
                &b"\xFF\xD8\xFF\xE0"[..],
                b"\x89PNG\r\n\x1a\n",
                b"GIF89a",
                b"II*\0",
                b"BM",
            ] {
                let mut fake = magic.to_vec();
                fake.extend_from_slice(&bytes);
                if let Err(e) = decode(&fake, &limits()) {
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn truncated_jpeg_is_an_error_not_a_panic() {
        let full = jpeg_bytes(&photo(300, 200));
        for cut in [3usize, 20, 100, 400, full.len() / 2, full.len() - 2] {
            match decode(&full[..cut], &limits()) {
                // zune-jpeg tolerates a missing tail; what matters is that nothing panics.
                Ok(img) => assert_eq!((img.width(), img.height()), (300, 200)),
                Err(e) => assert_eq!(e.code(), ErrorCode::DecodeFailed, "{e}"),
            }
        }
        assert!(decode(&full[..100], &limits()).is_err());
    }

    #[test]
    fn lying_png_header_is_rejected_fast() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr(100_000, 100_000, 8, 2));
        chunk(&mut png, b"IDAT", &zlib_stored(&[0; 64]));
        chunk(&mut png, b"IEND", &[]);
        let started = Instant::now();
        let err = decode(&png, &limits()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(
            err,
            DecodeError::DimensionsTooLarge {
                width: 100_000,
                height: 100_000,
                max_width: 12_000,
                max_height: 12_000,
                max_pixels: 50_000_000,
            }
        );
        assert_eq!(err.code(), ErrorCode::DecodeFailed);
    }

    #[test]
    fn lying_jpeg_header_is_rejected_fast() {
        let mut jpeg = jpeg_bytes(&photo(32, 32));
        // Patch the baseline SOF0 frame header to claim 60000×60000.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
        let started = Instant::now();
        let err = decode(&jpeg, &limits()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(
                err,
                DecodeError::DimensionsTooLarge {
                    width: 60_000,
                    height: 60_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn pixel_count_limit_applies_within_width_and_height_limits() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr(10_000, 10_000, 8, 2));
        chunk(&mut png, b"IDAT", &zlib_stored(&[0; 64]));
        chunk(&mut png, b"IEND", &[]);
        let err = decode(&png, &limits()).unwrap_err();
        assert!(matches!(err, DecodeError::DimensionsTooLarge { .. }));
    }

    #[test]
    fn memory_limit_is_enforced() {
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(&[0u8; 300 * 300 * 3], 300, 300, ExtendedColorType::Rgb8)
            .unwrap();
        let l = DecodeLimits {
            max_alloc_bytes: 1000,
            ..DecodeLimits::default()
        };
        let err = decode(&png, &l).unwrap_err();
        assert_eq!(err, DecodeError::MemoryLimit { max: 1000 });
    }

    #[test]
    fn sixteen_bit_png_with_alpha_becomes_rgb8_on_white() {
        let (w, h) = (4u32, 2u32);
        let mut raw = Vec::new();
        for i in 0..(w * h) {
            // Even pixels fully transparent black, odd pixels opaque red.
            let px: [u16; 4] = if i % 2 == 0 {
                [0, 0, 0, 0]
            } else {
                [65_535, 0, 0, 65_535]
            };
            for v in px {
                raw.extend_from_slice(&v.to_ne_bytes());
            }
        }
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(&raw, w, h, ExtendedColorType::Rgba16)
            .unwrap();
        let img = decode(&png, &limits()).unwrap();
        let rgb = img.as_rgb8().expect("decoded to Rgb8");
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([255, 255, 255]));
        assert_eq!(rgb.get_pixel(1, 0), &Rgb([255, 0, 0]));
    }

    #[test]
    fn palette_png_with_trns_becomes_rgb8_on_white() {
        // 2×1 image, 8-bit palette: index 0 = fully transparent blue, index 1 = half-transparent black.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr(2, 1, 8, 3));
        chunk(&mut png, b"PLTE", &[0, 0, 255, 0, 0, 0]);
        chunk(&mut png, b"tRNS", &[0, 128]);
        chunk(&mut png, b"IDAT", &zlib_stored(&[0, 0, 1]));
        chunk(&mut png, b"IEND", &[]);
        let img = decode(&png, &limits()).unwrap();
        let rgb = img.as_rgb8().expect("decoded to Rgb8");
        assert_eq!(rgb.get_pixel(0, 0), &Rgb([255, 255, 255]));
        let grey = rgb.get_pixel(1, 0);
        assert!(grey[0] > 120 && grey[0] < 135, "{grey:?}");
    }

    #[test]
    fn transparent_rgba_png_becomes_white() {
        let img = image::RgbaImage::from_pixel(3, 3, Rgba([0, 0, 0, 0]));
        let mut png = Vec::new();
        PngEncoder::new(&mut png)
            .write_image(img.as_raw(), 3, 3, ExtendedColorType::Rgba8)
            .unwrap();
        let out = decode(&png, &limits()).unwrap();
        assert!(out.as_rgb8().unwrap().pixels().all(|p| *p == Rgb([255; 3])));
    }

    #[test]
    fn exif_orientation_six_rotates_clockwise() {
        // 40×20, left half red and right half blue.
        let src = RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let plain = jpeg_bytes(&src);
        // Hand-made APP1: "Exif\0\0", big-endian TIFF header, one IFD entry Orientation(0x0112)=6.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
        exif.extend_from_slice(&[0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0, 0, 0]);
        let mut app1 = vec![0xFF, 0xE1];
        app1.extend_from_slice(&u16::try_from(exif.len() + 2).unwrap().to_be_bytes());
        app1.extend_from_slice(&exif);
        // Insert after SOI + APP0 (JFIF), as cameras do.
        let app0_end = 4 + usize::from(u16::from_be_bytes([plain[4], plain[5]]));
        let mut jpeg = plain[..app0_end].to_vec();
        jpeg.extend_from_slice(&app1);
        jpeg.extend_from_slice(&plain[app0_end..]);

        let img = decode(&jpeg, &limits()).unwrap();
        assert_eq!((img.width(), img.height()), (20, 40));
        let rgb = img.as_rgb8().unwrap();
        // Rotating 90° clockwise moves the left (red) half to the top.
        let top = rgb.get_pixel(10, 5);
        let bottom = rgb.get_pixel(10, 35);
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    }

    /// A 24×16 photo encoded in each format image-rs writes (GIF needs RGBA).
    fn small_photo_in_every_format() -> Vec<(image::ImageFormat, Vec<u8>)> {
        let src = DynamicImage::ImageRgb8(photo(24, 16));
        [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::WebP,
            image::ImageFormat::Gif,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
        ]
        .into_iter()
        .map(|format| {
            let mut bytes = Cursor::new(Vec::new());
            let img = if format == image::ImageFormat::Gif {
                DynamicImage::ImageRgba8(src.to_rgba8())
            } else {
                src.clone()
            };
            img.write_to(&mut bytes, format).unwrap();
            (format, bytes.into_inner())
        })
        .collect()
    }

    #[test]
    fn every_accepted_format_decodes_to_rgb8() {
        for (format, bytes) in small_photo_in_every_format() {
            let img = decode(&bytes, &limits()).unwrap();
            assert_eq!((img.width(), img.height()), (24, 16), "{format:?}");
            assert!(img.as_rgb8().is_some(), "{format:?}");
        }
    }

    #[test]
    fn ordinary_jpeg_decodes_to_rgb8() {
        let img = decode(&jpeg_bytes(&photo(64, 48)), &limits()).unwrap();
        assert_eq!((img.width(), img.height()), (64, 48));
        assert!(img.as_rgb8().is_some());
    }

    #[test]
    fn messages_are_clean() {
        assert_eq!(clean_message("bad\u{0}\u{7}x"), "bad??x");
        assert_eq!(clean_message("\n\t"), "malformed image data");
        assert_eq!(clean_message("a\nb"), "a b");
        assert!(clean_message(&"a".repeat(1000)).len() <= 160);
    }

    // ---- Real files made by other tools (see tests/fixtures/README.md) ----

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn assert_near(img: &RgbImage, x: u32, y: u32, want: [u8; 3], tol: u8) {
        let got = img.get_pixel(x, y).0;
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.abs_diff(w) <= tol,
                "pixel ({x},{y}) is {got:?}, want {want:?}±{tol}"
            );
        }
    }

    /// The synthetic 96×64 test card: left half red, right half blue, a green stripe on top.
    fn assert_test_card(img: &DynamicImage, tol: u8) {
        assert_eq!((img.width(), img.height()), (96, 64));
        let rgb = img.as_rgb8().expect("Rgb8");
        assert_near(rgb, 20, 40, [230, 30, 30], tol);
        assert_near(rgb, 70, 40, [30, 30, 230], tol);
        assert_near(rgb, 40, 3, [30, 200, 30], tol);
    }

    #[test]
    fn progressive_jpeg_decodes() {
        assert_test_card(&decode(&fixture("progressive.jpg"), &limits()).unwrap(), 12);
    }

    #[test]
    fn adobe_cmyk_jpeg_is_inverted_back_to_rgb() {
        // Pillow: Adobe APP14 transform 0, inverted CMYK, no ICC profile (naive conversion).
        assert_test_card(&decode(&fixture("cmyk-adobe.jpg"), &limits()).unwrap(), 16);
    }

    #[test]
    fn ycck_jpegs_baseline_and_progressive_decode() {
        // ImageMagick: Adobe APP14 transform 2 (YCCK).
        assert_test_card(&decode(&fixture("cmyk-ycck.jpg"), &limits()).unwrap(), 16);
        assert_test_card(
            &decode(&fixture("cmyk-ycck-progressive.jpg"), &limits()).unwrap(),
            16,
        );
    }

    #[test]
    fn cmyk_jpeg_without_adobe_marker_is_not_inverted() {
        assert_test_card(
            &decode(&fixture("cmyk-no-adobe.jpg"), &limits()).unwrap(),
            16,
        );
    }

    #[test]
    fn adobe_rgb_profile_is_converted_to_srgb() {
        // (100, 150, 100) in Adobe RGB is (66, 151, 97) in sRGB according to LittleCMS.
        for (name, tol) in [("adobergb.png", 3), ("adobergb.jpg", 4)] {
            let img = decode(&fixture(name), &limits()).unwrap();
            assert_near(img.as_rgb8().unwrap(), 5, 5, [66, 151, 97], tol);
        }
    }

    #[test]
    fn srgb_profile_is_recognised_and_left_alone() {
        let srgb = moxcms::ColorProfile::new_srgb();
        assert!(is_srgb(&srgb));
        assert!(!is_srgb(&moxcms::ColorProfile::new_display_p3()));
    }

    #[test]
    fn gif_first_frame_is_used() {
        use image::codecs::gif::GifEncoder;
        use image::{Delay, Frame};
        let red = image::RgbaImage::from_pixel(8, 8, Rgba([255, 0, 0, 255]));
        let blue = image::RgbaImage::from_pixel(8, 8, Rgba([0, 0, 255, 255]));
        let mut gif = Vec::new();
        {
            let mut enc = GifEncoder::new(&mut gif);
            for f in [red, blue] {
                enc.encode_frame(Frame::from_parts(
                    f,
                    0,
                    0,
                    Delay::from_numer_denom_ms(100, 1),
                ))
                .unwrap();
            }
        }
        let img = decode(&gif, &limits()).unwrap();
        assert_near(img.as_rgb8().unwrap(), 4, 4, [255, 0, 0], 2);
    }

    #[cfg(feature = "heic")]
    #[test]
    fn heic_decodes() {
        assert_test_card(&decode(&fixture("card.heic"), &limits()).unwrap(), 20);
    }

    #[cfg(feature = "heic")]
    #[test]
    fn heic_irot_is_applied() {
        // irot 3 = 270° anticlockwise: red half on top, blue at the bottom, green stripe right.
        let img = decode(&fixture("card-irot270.heic"), &limits()).unwrap();
        assert_eq!((img.width(), img.height()), (64, 96));
        let rgb = img.as_rgb8().unwrap();
        assert_near(rgb, 30, 20, [230, 30, 30], 20);
        assert_near(rgb, 30, 85, [30, 30, 230], 20);
        assert_near(rgb, 60, 50, [30, 200, 30], 20);
    }

    #[cfg(feature = "heic")]
    #[test]
    fn heic_exif_orientation_is_not_applied_twice() {
        // heif-enc copied EXIF orientation 6 but wrote no irot: HEIF readers ignore the EXIF tag.
        assert_test_card(&decode(&fixture("card-exif6.heic"), &limits()).unwrap(), 20);
    }

    #[cfg(feature = "heic")]
    #[test]
    fn heic_alpha_is_flattened_on_white_and_profile_applied() {
        let img = decode(&fixture("card-alpha.heic"), &limits()).unwrap();
        let rgb = img.as_rgb8().unwrap();
        assert_near(rgb, 20, 40, [255, 255, 255], 6);
        assert_near(rgb, 70, 40, [30, 30, 230], 20);
        let img = decode(&fixture("adobergb.heic"), &limits()).unwrap();
        assert_near(img.as_rgb8().unwrap(), 30, 30, [66, 151, 97], 6);
    }

    #[cfg(feature = "heic")]
    #[test]
    fn heic_dimension_limit_applies_before_decoding() {
        let l = DecodeLimits {
            max_width: 50,
            ..DecodeLimits::default()
        };
        let err = decode(&fixture("card.heic"), &l).unwrap_err();
        assert!(
            matches!(err, DecodeError::DimensionsTooLarge { width: 96, .. }),
            "{err}"
        );
        let l = DecodeLimits {
            max_alloc_bytes: 10_000,
            ..DecodeLimits::default()
        };
        let err = decode(&fixture("card.heic"), &l).unwrap_err();
        assert_eq!(err, DecodeError::MemoryLimit { max: 10_000 });
    }

    #[cfg(feature = "heic")]
    #[test]
    fn truncated_heic_fails_cleanly() {
        let full = fixture("card.heic");
        for cut in [16, 40, 100, full.len() / 2, full.len() - 1] {
            if let Err(e) = decode(&full[..cut], &limits()) {
                assert_eq!(e.code(), ErrorCode::DecodeFailed, "{e}");
            }
        }
    }

    #[cfg(not(feature = "heic"))]
    #[test]
    fn heic_without_libheif_is_unsupported() {
        let err = decode(&fixture("card.heic"), &limits()).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnsupportedFormat { .. }),
            "{err}"
        );
        assert!(err.is_payload_invalid());
    }

    #[test]
    fn sniff_recognises_heif_brands() {
        let ftyp = |major: &[u8; 4], compat: &[&[u8; 4]]| {
            let mut b = vec![0, 0, 0, 0];
            b.extend_from_slice(b"ftyp");
            b.extend_from_slice(major);
            b.extend_from_slice(&[0; 4]);
            for c in compat {
                b.extend_from_slice(*c);
            }
            let len = u32::try_from(b.len()).unwrap();
            b[..4].copy_from_slice(&len.to_be_bytes());
            b
        };
        assert_eq!(
            sniff(&ftyp(b"heic", &[b"mif1"])),
            Sniffed::Heif { avif: false }
        );
        assert_eq!(
            sniff(&ftyp(b"mif1", &[b"heic"])),
            Sniffed::Heif { avif: false }
        );
        assert_eq!(
            sniff(&ftyp(b"avif", &[b"mif1"])),
            Sniffed::Heif { avif: true }
        );
        assert_eq!(sniff(&ftyp(b"isom", &[b"mp41"])), Sniffed::Other);
        // A box length that lies must not read out of bounds.
        let mut liar = ftyp(b"isom", &[b"heic"]);
        liar[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(sniff(&liar), Sniffed::Heif { avif: false });
        assert_eq!(sniff(b"\0\0\0\x08ftyp"), Sniffed::Other);
    }

    // ---- Bombs, liars and impostors ----

    fn fast_err(bytes: &[u8]) -> DecodeError {
        let started = Instant::now();
        let err = decode(bytes, &limits()).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        assert!(!err.to_string().is_empty());
        err
    }

    #[test]
    fn gif_claiming_huge_dimensions_is_rejected() {
        let mut gif = b"GIF89a".to_vec();
        gif.extend_from_slice(&65_535u16.to_le_bytes());
        gif.extend_from_slice(&65_535u16.to_le_bytes());
        gif.extend_from_slice(&[0, 0, 0]);
        // One image descriptor, also 65535×65535, with a tiny LZW stream.
        gif.push(0x2C);
        gif.extend_from_slice(&[0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0]);
        gif.extend_from_slice(&[2, 2, 0x4C, 0x01, 0, 0x3B]);
        let err = fast_err(&gif);
        assert_eq!(err.code(), ErrorCode::DecodeFailed, "{err}");
    }

    #[test]
    fn webp_claiming_huge_dimensions_is_rejected() {
        // A real lossless WebP whose VP8L header is patched to claim 16000×16000.
        let mut webp = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(photo(16, 16))
            .write_to(&mut webp, image::ImageFormat::WebP)
            .unwrap();
        let mut webp = webp.into_inner();
        assert_eq!(&webp[12..16], b"VP8L");
        let bits = u32::from_le_bytes([webp[21], webp[22], webp[23], webp[24]]);
        let bits = (bits & !0x0FFF_FFFF) | 15_999 | (15_999 << 14);
        webp[21..25].copy_from_slice(&bits.to_le_bytes());
        let err = fast_err(&webp);
        assert!(
            matches!(err, DecodeError::DimensionsTooLarge { width: 16_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn tiff_claiming_huge_dimensions_is_rejected() {
        // Little-endian TIFF, one IFD: 100000×100000, 8-bit RGB, one strip of 16 bytes.
        let entries: [(u16, u16, u32, u32); 9] = [
            (256, 4, 1, 100_000),
            (257, 4, 1, 100_000),
            (258, 3, 1, 8),
            (259, 3, 1, 1),
            (262, 3, 1, 2),
            (273, 4, 1, 200),
            (277, 3, 1, 3),
            (278, 4, 1, 100_000),
            (279, 4, 1, 16),
        ];
        let mut tiff = b"II*\0\x08\0\0\0".to_vec();
        tiff.extend_from_slice(&u16::try_from(entries.len()).unwrap().to_le_bytes());
        for (tag, kind, count, value) in entries {
            tiff.extend_from_slice(&tag.to_le_bytes());
            tiff.extend_from_slice(&kind.to_le_bytes());
            tiff.extend_from_slice(&count.to_le_bytes());
            tiff.extend_from_slice(&value.to_le_bytes());
        }
        tiff.extend_from_slice(&[0; 4]);
        tiff.resize(216, 0);
        let err = fast_err(&tiff);
        assert!(
            matches!(err, DecodeError::DimensionsTooLarge { width: 100_000, .. }),
            "{err}"
        );
    }

    #[test]
    fn bmp_claiming_huge_dimensions_is_rejected() {
        let mut bmp = b"BM".to_vec();
        bmp.extend_from_slice(&[0; 8]);
        bmp.extend_from_slice(&54u32.to_le_bytes());
        bmp.extend_from_slice(&40u32.to_le_bytes());
        bmp.extend_from_slice(&30_000i32.to_le_bytes());
        bmp.extend_from_slice(&30_000i32.to_le_bytes());
        bmp.extend_from_slice(&1u16.to_le_bytes());
        bmp.extend_from_slice(&24u16.to_le_bytes());
        bmp.extend_from_slice(&[0; 24]);
        let err = fast_err(&bmp);
        assert!(
            matches!(err, DecodeError::DimensionsTooLarge { .. }),
            "{err}"
        );
    }

    #[test]
    fn png_deflate_bomb_is_rejected_before_inflating() {
        // 1 MB of zeros that claims 20000×20000: refused from the header alone.
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        chunk(&mut png, b"IHDR", &ihdr(20_000, 20_000, 8, 6));
        chunk(&mut png, b"IDAT", &zlib_stored(&vec![0; 1 << 20]));
        chunk(&mut png, b"IEND", &[]);
        assert!(matches!(
            fast_err(&png),
            DecodeError::DimensionsTooLarge { .. }
        ));
    }

    #[test]
    fn text_renamed_png_and_html_are_payload_invalid() {
        for text in [
            &b"PNG file? no, just text\n"[..],
            b"<!DOCTYPE html><html><body>hi</body></html>",
            b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n",
            b"PK\x03\x04\x14\0\0\0\x08\0",
        ] {
            let err = fast_err(text);
            assert!(err.is_payload_invalid(), "{err}");
        }
    }

    #[test]
    fn gif_javascript_polyglot_decodes_only_the_image() {
        // `GIF89a=...` is both a valid GIF header and the start of a JavaScript assignment.
        let mut poly = b"GIF89a".to_vec();
        // Screen 0x2A2F×1 (the bytes `/*` open a JS comment), global palette of two colours.
        // 10799×1 is within limits, so decode must give an image or a clean error, never panic.
        poly.extend_from_slice(&[0x2F, 0x2A, 0x01, 0x00, 0x80, 0, 0]);
        poly.extend_from_slice(&[0, 0, 0, 0xFF, 0xFF, 0xFF]);
        poly.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0]);
        poly.extend_from_slice(b";*/=1;alert(1);//");
        match decode(&poly, &limits()) {
            Ok(img) => assert!(img.as_rgb8().is_some()),
            Err(e) => assert_eq!(e.code(), ErrorCode::DecodeFailed, "{e}"),
        }
    }

    #[test]
    fn jpeg_with_zip_appended_decodes_the_image_part() {
        let mut poly = jpeg_bytes(&photo(40, 30));
        poly.extend_from_slice(b"PK\x03\x04\x14\0\0\0\x08\0secret.txt");
        poly.extend_from_slice(&[0x55; 2000]);
        poly.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
        let img = decode(&poly, &limits()).unwrap();
        assert_eq!((img.width(), img.height()), (40, 30));
    }

    #[test]
    fn timeout_returns_decode_failed() {
        let big = photo(3000, 2000);
        let jpeg = jpeg_bytes(&big);
        let l = DecodeLimits {
            max_decode_time: Duration::from_micros(1),
            ..DecodeLimits::default()
        };
        let started = Instant::now();
        let err = decode(&jpeg, &l).unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(matches!(err, DecodeError::Timeout { .. }), "{err}");
        assert_eq!(err.code(), ErrorCode::DecodeFailed);
        assert!(err.to_string().contains("took longer than"), "{err}");
        // The abandoned thread finishes on its own and the count of overdue decodes drops back.
        let waited = Instant::now();
        while OVERDUE_DECODES.load(Ordering::SeqCst) > 0
            && waited.elapsed() < Duration::from_secs(20)
        {
            thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(OVERDUE_DECODES.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn unavailable_is_internal() {
        let err = DecodeError::Unavailable("x".to_owned());
        assert_eq!(err.code(), ErrorCode::Internal);
        assert!(!err.is_payload_invalid());
    }

    #[test]
    fn adobe_marker_walk_is_bounded() {
        assert!(!jpeg_has_adobe_marker(b"\xFF\xD8"));
        assert!(!jpeg_has_adobe_marker(b"\xFF\xD8\xFF\xE0\xFF\xFF"));
        assert!(jpeg_has_adobe_marker(
            b"\xFF\xD8\xFF\xEE\x00\x0EAdobe\0\0\0\0\0\0"
        ));
        assert!(!jpeg_has_adobe_marker(b"\xFF\xD8\xFF\xEE\x00\x0EAdob"));
    }

    // ---- Fuzzing: mutations of real files, plus the inputs that once broke something ----

    /// Every file kept in `decode-regressions/` must decode to Rgb8 or fail cleanly.
    #[test]
    fn decode_regressions_do_not_panic() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/decode-regressions"
        );
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            // Straight into the decoder, without `catch_unwind`, so a panic fails this test.
            check_no_panic(&bytes, &path.display().to_string());
            seen += 1;
        }
        assert!(seen > 0, "no regression inputs found in {dir}");
    }

    fn fuzz_limits() -> DecodeLimits {
        // Small limits keep each case fast; the code paths are the same.
        DecodeLimits {
            max_width: 2_000,
            max_height: 2_000,
            max_pixels: 2_000_000,
            max_alloc_bytes: 64 * 1024 * 1024,
            ..DecodeLimits::default()
        }
    }

    fn check_no_panic(bytes: &[u8], what: &str) {
        match decode_checked(bytes, &fuzz_limits(), None) {
            Ok(img) => {
                assert!(img.as_rgb8().is_some(), "{what}: not Rgb8");
                assert!(img.width() > 0 && img.height() > 0, "{what}: empty image");
            }
            Err(e) => assert!(!e.to_string().is_empty(), "{what}"),
        }
        // The seeds are too small for `decode_checked` to choose the reduced path, so JPEGs also
        // go straight into libjpeg at every scale, after the same header checks.
        let Ok(stored) = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .and_then(|r| r.into_dimensions().map_err(std::io::Error::other))
        else {
            return;
        };
        if !bytes.starts_with(&[0xFF, 0xD8])
            || check_dimensions(stored.0, stored.1, &fuzz_limits()).is_err()
        {
            return;
        }
        for eighths in [1u32, 2, 4] {
            let pruned = (eighths == 1)
                .then(|| without_unread_ac_scans(bytes))
                .flatten();
            let want = scaled_size(stored, eighths);
            if let Ok(img) =
                decode_jpeg_scaled(pruned.as_deref().unwrap_or(bytes), stored, eighths, want)
            {
                assert_eq!(img.dimensions(), want, "{what} at {eighths}/8");
            }
        }
    }

    /// Seeds: one small valid file per format (and code path), fixtures included.
    fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
        let mut seeds: Vec<(String, Vec<u8>)> = small_photo_in_every_format()
            .into_iter()
            .map(|(format, bytes)| (format!("{format:?}"), bytes))
            .collect();
        for name in [
            "progressive.jpg",
            "cmyk-adobe.jpg",
            "cmyk-ycck.jpg",
            "cmyk-ycck-progressive.jpg",
            "cmyk-no-adobe.jpg",
            "adobergb.png",
            "adobergb.jpg",
            "card.heic",
            "card-irot270.heic",
            "card-alpha.heic",
            "adobergb.heic",
        ] {
            seeds.push((name.to_owned(), fixture(name)));
        }
        seeds
    }

    /// A mutational fuzzer over the seeds: bit flips, byte overwrites with "interesting" values,
    /// truncation, duplication and splicing, all from a fixed-seed PRNG so any failure replays.
    /// `DECODE_FUZZ_ITERS` sets the number of cases (default 400), `DECODE_FUZZ_SEED` the PRNG
    /// seed and `DECODE_FUZZ_SECS` a time budget, for long runs.
    /// On a panic the failing input is written to `target/decode-fuzz-crash.bin`.
    #[test]
    fn fuzz_mutated_seeds() {
        let iters: u64 = std::env::var("DECODE_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400);
        let seed0: u64 = std::env::var("DECODE_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0x5EED);
        let seeds = fuzz_seeds();
        let mut rng = seed0 | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        // `DECODE_FUZZ_SECS` stops the run early (a time budget for long runs).
        let budget = std::env::var("DECODE_FUZZ_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::MAX, Duration::from_secs);
        let started = Instant::now();
        let mut done = 0u64;
        for i in 0..iters {
            if started.elapsed() > budget {
                break;
            }
            done += 1;
            let (name, base) = &seeds[(next() % seeds.len() as u64) as usize];
            let mut data = base.clone();
            for _ in 0..=(next() % 8) {
                let len = data.len().max(1) as u64;
                let pos = (next() % len) as usize;
                match next() % 7 {
                    0 => {
                        if let Some(b) = data.get_mut(pos) {
                            *b ^= 1 << (next() % 8);
                        }
                    }
                    1 => {
                        const INTERESTING: [u8; 8] = [0, 1, 0x7F, 0x80, 0xFE, 0xFF, 0x10, 0x40];
                        if let Some(b) = data.get_mut(pos) {
                            *b = INTERESTING[(next() % 8) as usize];
                        }
                    }
                    2 => data.truncate(pos.max(1)),
                    3 => {
                        let end = (pos + (next() % 64) as usize).min(data.len());
                        let piece = data[pos..end].to_vec();
                        let at = (next() % len) as usize;
                        data.splice(at.min(data.len())..at.min(data.len()), piece);
                    }
                    4 => {
                        if let Some(b) = data.get_mut(pos) {
                            *b = (next() & 0xFF) as u8;
                        }
                    }
                    5 => {
                        // Big-endian 16/32-bit field set to a large value (dimensions, lengths).
                        let v = [0xFFu8, 0xFF, 0x7F, 0xFF];
                        for (k, b) in data
                            .iter_mut()
                            .skip(pos)
                            .enumerate()
                            .take(2 + (next() % 3) as usize)
                        {
                            *b = v[k % 4];
                        }
                    }
                    _ => {
                        let (_, other) = &seeds[(next() % seeds.len() as u64) as usize];
                        let cut = (next() % other.len() as u64) as usize;
                        data.truncate(pos);
                        data.extend_from_slice(&other[cut..]);
                    }
                }
            }
            if data.is_empty() {
                continue;
            }
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                check_no_panic(&data, name);
            }));
            if result.is_err() {
                let out = concat!(env!("CARGO_MANIFEST_DIR"), "/target/decode-fuzz-crash.bin");
                let _ = std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target"));
                std::fs::write(out, &data).unwrap();
                panic!("case {i} (mutated {name}) panicked; input saved to {out}");
            }
        }
        eprintln!(
            "fuzz: {done} cases in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }

    // ---- reduced-scale JPEG decoding ----

    fn target(width: u32, height: u32) -> TargetSize {
        TargetSize { width, height }
    }

    fn with_orientation(jpeg: &[u8], value: u8) -> Vec<u8> {
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
        exif.extend_from_slice(&[
            0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, value, 0, 0, 0, 0, 0, 0,
        ]);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&u16::try_from(exif.len() + 2).unwrap().to_be_bytes());
        out.extend_from_slice(&exif);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    fn reduced(bytes: &[u8], t: TargetSize) -> DynamicImage {
        decode_for_target_timed(bytes, &limits(), t).unwrap().0
    }

    fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
        assert_eq!(a.dimensions(), b.dimensions());
        let total: u64 = a
            .as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(&x, &y)| u64::from(x.abs_diff(y)))
            .sum();
        total as f64 / a.as_raw().len() as f64
    }

    #[test]
    fn reduced_scale_is_the_smallest_that_still_covers_the_target() {
        let none = Orientation::NoTransforms;
        // A 12 MP phone photo for a 200 × 230 portal photo: 1/8, 504 × 378 (covers 200 × 230).
        assert_eq!(
            reduced_scale((4032, 3024), none, target(200, 230)),
            Some((1, (504, 378)))
        );
        // 630 × 810 needs 1/2 (1/4 would leave 756 rows).
        assert_eq!(
            reduced_scale((4032, 3024), none, target(630, 810)),
            Some((4, (2016, 1512)))
        );
        // Stored sideways: the upright target is compared with the rotated frame.
        assert_eq!(
            reduced_scale((4032, 3024), Orientation::Rotate90, target(230, 200)),
            Some((1, (504, 378)))
        );
        // The long side stays near QUALITY's analysis size even for a tiny target.
        assert_eq!(
            reduced_scale((3000, 2000), none, target(140, 60)),
            Some((2, (750, 500)))
        );
        // Nothing to gain: small photos and large targets are decoded at full size.
        assert_eq!(reduced_scale((600, 400), none, target(200, 230)), None);
        assert_eq!(reduced_scale((2000, 2800), none, target(1240, 1754)), None);
    }

    #[test]
    fn a_large_jpeg_is_decoded_reduced_and_matches_the_full_decode() {
        let big = photo(2400, 1800);
        let bytes = jpeg_bytes(&big);
        let small = reduced(&bytes, target(200, 230)).into_rgb8();
        // 1/8 would be 300 × 225 (short of 230 rows), so 1/4.
        assert_eq!(small.dimensions(), (600, 450));
        // Same picture as the full decode box-averaged by 4.
        let full = decode(&bytes, &limits()).unwrap().into_rgb8();
        let boxed = image::imageops::thumbnail(&full, 600, 450);
        let diff = mean_abs_diff(&small, &boxed);
        assert!(diff < 6.0, "mean difference {diff:.2}");
        // Without a target, or for a target as large as the image, nothing changes.
        assert_eq!(
            reduced(&bytes, target(2400, 1800)).into_rgb8().dimensions(),
            (2400, 1800)
        );
    }

    #[test]
    fn reduced_decode_applies_exif_orientation() {
        // Left half red, right half blue; stored with orientation 6 (rotate 90° clockwise).
        let src = RgbImage::from_fn(2400, 1600, |x, _| {
            if x < 1200 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let bytes = with_orientation(&jpeg_bytes(&src), 6);
        let img = reduced(&bytes, target(100, 100)).into_rgb8();
        // Upright: 1600 × 2400 at 1/4 (1/8 would leave only 300 pixels on the long side).
        assert_eq!(img.dimensions(), (400, 600));
        let (top, bottom) = (img.get_pixel(200, 50), img.get_pixel(200, 550));
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    }

    #[test]
    fn reduced_decode_converts_the_icc_profile_like_the_full_decode() {
        // The Adobe RGB fixture, enlarged so the reduced path applies, keeps its profile.
        let original = fixture("adobergb.jpg");
        let icc = ImageReader::new(Cursor::new(&original))
            .with_guessed_format()
            .unwrap()
            .into_decoder()
            .unwrap()
            .icc_profile()
            .unwrap()
            .unwrap();
        let pixels = image::load_from_memory(&original).unwrap().into_rgb8();
        let big =
            image::imageops::resize(&pixels, 2048, 2048, image::imageops::FilterType::Nearest);
        let mut bytes = Vec::new();
        let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 95);
        encoder.set_icc_profile(icc).unwrap();
        encoder.encode_image(&big).unwrap();
        let small = reduced(&bytes, target(100, 100)).into_rgb8();
        assert_eq!(small.dimensions(), (512, 512));
        let full = decode(&bytes, &limits()).unwrap().into_rgb8();
        let boxed = image::imageops::thumbnail(&full, 512, 512);
        let diff = mean_abs_diff(&small, &boxed);
        assert!(diff < 4.0, "mean difference {diff:.2}");
    }

    #[test]
    fn the_reduced_path_falls_back_for_cmyk_and_keeps_every_rejection() {
        // CMYK goes through the ink-preserving full decode, whatever the target.
        for name in ["cmyk-adobe.jpg", "cmyk-ycck-progressive.jpg"] {
            let bytes = fixture(name);
            let a = decode(&bytes, &limits()).unwrap().into_rgb8();
            let b = reduced(&bytes, target(10, 10)).into_rgb8();
            assert_eq!(a, b, "{name}");
        }
        // Limits are checked before the reduced path is considered.
        let mut jpeg = jpeg_bytes(&photo(32, 32));
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&60_000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&60_000u16.to_be_bytes());
        let err = decode_for_target_timed(&jpeg, &limits(), target(200, 230)).unwrap_err();
        assert!(
            matches!(err, DecodeError::DimensionsTooLarge { .. }),
            "{err}"
        );
        // A truncated large JPEG: an image or a DECODE_FAILED, never a panic.
        let full = jpeg_bytes(&photo(2400, 1800));
        for cut in [200usize, full.len() / 3, full.len() - 2] {
            if let Err(e) = decode_for_target_timed(&full[..cut], &limits(), target(200, 230)) {
                assert_eq!(e.code(), ErrorCode::DecodeFailed, "{e}");
            }
        }
    }

    /// A progressive JPEG from jpeg-encoder (spectral selection only) with the given sampling.
    fn progressive_jpeg(img: &RgbImage, sampling: jpeg_encoder::SamplingFactor) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut encoder = jpeg_encoder::Encoder::new(&mut bytes, 90);
        encoder.set_progressive(true);
        encoder.set_sampling_factor(sampling);
        let (w, h) = (img.width() as u16, img.height() as u16);
        encoder
            .encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
            .unwrap();
        bytes
    }

    fn scaled_size(stored: (u32, u32), eighths: u32) -> (u32, u32) {
        (
            (stored.0 * eighths).div_ceil(8),
            (stored.1 * eighths).div_ceil(8),
        )
    }

    /// `without_unread_ac_scans` followed by the 1/8 decode, against the 1/8 decode of the whole
    /// file; returns the pruned file.
    fn assert_pruning_keeps_pixels(bytes: &[u8], stored: (u32, u32)) -> Vec<u8> {
        let want = scaled_size(stored, 1);
        let pruned = without_unread_ac_scans(bytes).expect("some scans dropped");
        assert!(pruned.len() < bytes.len());
        let whole = decode_jpeg_scaled(bytes, stored, 1, want).unwrap();
        let kept = decode_jpeg_scaled(&pruned, stored, 1, want).unwrap();
        assert_eq!(whole, kept);
        pruned
    }

    #[test]
    fn dropping_unread_progressive_scans_keeps_the_reduced_pixels() {
        // libjpeg's script (successive approximation, DC and AC refinement scans), 4:2:0.
        assert_pruning_keeps_pixels(&fixture("progressive.jpg"), (96, 64));
        let img = photo(640, 480);
        // 4:4:4: every AC scan goes, only the DC scan is left.
        let full = progressive_jpeg(&img, jpeg_encoder::SamplingFactor::F_1_1);
        let dc_only = assert_pruning_keeps_pixels(&full, (640, 480));
        assert!(
            dc_only.len() * 8 < full.len(),
            "{} of {}",
            dc_only.len(),
            full.len()
        );
        // 4:2:0: libjpeg-turbo rebuilds chroma with a 2 × 2 IDCT at 1/8, so only luma's AC
        // scans go.
        let subsampled = progressive_jpeg(&img, jpeg_encoder::SamplingFactor::F_2_2);
        let luma_dc = assert_pruning_keeps_pixels(&subsampled, (640, 480));
        assert!(luma_dc.len() * 2 < subsampled.len());
        assert!(luma_dc.len() > dc_only.len());
    }

    #[test]
    fn dc_only_components_follow_libjpeg_turbos_idct_scaling() {
        let sof = |factors: &[u8]| {
            let mut body = vec![8, 0, 16, 0, 16, u8::try_from(factors.len()).unwrap()];
            for (id, &f) in (1u8..).zip(factors) {
                body.extend_from_slice(&[id, f, 0]);
            }
            body
        };
        // 4:4:4 and grey: every component at 1 × 1.
        assert_eq!(
            dc_only_components(&sof(&[0x11, 0x11, 0x11])),
            Some(vec![1, 2, 3])
        );
        assert_eq!(dc_only_components(&sof(&[0x11])), Some(vec![1]));
        // 4:2:0: chroma at 2 × 2; 4:2:2 (vertical factors equal): chroma stays at 1 × 1.
        assert_eq!(dc_only_components(&sof(&[0x22, 0x11, 0x11])), Some(vec![1]));
        assert_eq!(
            dc_only_components(&sof(&[0x21, 0x11, 0x11])),
            Some(vec![1, 2, 3])
        );
        // 4:1:1 (vertical factors equal): chroma at 1 × 1 too; 4 × 2 luma: chroma at 2 × 2.
        assert_eq!(
            dc_only_components(&sof(&[0x41, 0x11, 0x11])),
            Some(vec![1, 2, 3])
        );
        assert_eq!(dc_only_components(&sof(&[0x42, 0x11, 0x11])), Some(vec![1]));
        // A zero factor or a short segment: no pruning.
        assert_eq!(dc_only_components(&sof(&[0x10, 0x11])), None);
        assert_eq!(dc_only_components(&[8, 0, 16, 0, 16, 3, 1, 0x11]), None);
    }

    #[test]
    fn only_whole_progressive_files_are_pruned() {
        // Baseline: every scan carries every coefficient.
        assert_eq!(without_unread_ac_scans(&jpeg_bytes(&photo(64, 64))), None);
        // Truncated anywhere (no EOI to reach): the file is decoded as it is.
        let progressive = fixture("progressive.jpg");
        for cut in [1, 2, 20, progressive.len() / 2, progressive.len() - 2] {
            assert_eq!(
                without_unread_ac_scans(&progressive[..cut]),
                None,
                "cut {cut}"
            );
        }
        // Not a JPEG, or garbage after SOI.
        assert_eq!(without_unread_ac_scans(b"\x89PNG\r\n"), None);
        assert_eq!(without_unread_ac_scans(&[0xFF, 0xD8, 0x12, 0x34]), None);
    }

    #[test]
    fn libjpeg_decodes_at_every_scale_close_to_the_full_decode_resized() {
        let img = photo(1200, 800);
        for (what, bytes) in [
            ("baseline", jpeg_bytes(&img)),
            (
                "progressive 4:2:0",
                progressive_jpeg(&img, jpeg_encoder::SamplingFactor::F_2_2),
            ),
            ("libjpeg progressive", fixture("progressive.jpg")),
        ] {
            let full = decode(&bytes, &limits()).unwrap().into_rgb8();
            for eighths in [1u32, 2, 4] {
                let want = scaled_size(full.dimensions(), eighths);
                let small = decode_jpeg_scaled(&bytes, full.dimensions(), eighths, want)
                    .unwrap_or_else(|e| panic!("{what} at {eighths}/8: {e}"));
                assert_eq!(small.dimensions(), want, "{what} at {eighths}/8");
                // The scaled IDCT averages whole blocks, as a box filter does.
                let boxed = image::imageops::thumbnail(&full, want.0, want.1);
                let diff = mean_abs_diff(&small, &boxed);
                assert!(
                    diff < 6.0,
                    "{what} at {eighths}/8: mean difference {diff:.2}"
                );
            }
        }
    }

    #[test]
    fn libjpeg_turns_down_truncated_damaged_and_foreign_data() {
        let img = photo(800, 600);
        for (what, bytes) in [
            ("baseline", jpeg_bytes(&img)),
            (
                "progressive",
                progressive_jpeg(&img, jpeg_encoder::SamplingFactor::F_2_2),
            ),
        ] {
            let want = scaled_size((800, 600), 2);
            assert!(decode_jpeg_scaled(&bytes, (800, 600), 2, want).is_ok());
            // Truncated: libjpeg would pad with grey and only warn; the warning declines.
            for cut in [bytes.len() / 2, bytes.len() - 2] {
                let err = decode_jpeg_scaled(&bytes[..cut], (800, 600), 2, want).unwrap_err();
                assert!(err.contains("Warning"), "{what} cut at {cut}: {err}");
            }
            // Entropy-coded data overwritten with a marker in the middle.
            let mut damaged = bytes.clone();
            let mid = damaged.len() / 2;
            damaged[mid..mid + 2].copy_from_slice(&[0xFF, 0xD0]);
            assert!(
                decode_jpeg_scaled(&damaged, (800, 600), 2, want).is_err(),
                "{what}"
            );
            // A header that disagrees with the caller's probe.
            assert!(decode_jpeg_scaled(&bytes, (801, 600), 2, want).is_err());
        }
        // Not a JPEG at all: libjpeg's error exit, caught.
        let err =
            decode_jpeg_scaled(b"\x89PNG\r\n\x1a\nnot a jpeg", (8, 8), 1, (1, 1)).unwrap_err();
        assert!(err.contains("Error"), "{err}");
        // CMYK is left to the ink-preserving full decode.
        let cmyk = fixture("cmyk-adobe.jpg");
        assert!(decode_jpeg_scaled(&cmyk, full_size(&cmyk), 1, (1, 1)).is_err());
        // Through the stage: a truncated large JPEG is still rejected (or decoded in full by
        // the full decoder), never returned with libjpeg's grey rows.
        let big = jpeg_bytes(&photo(2400, 1800));
        let cut = &big[..big.len() * 2 / 3];
        match decode_for_target_timed(cut, &limits(), target(200, 230)) {
            Err(e) => assert_eq!(e.code(), ErrorCode::DecodeFailed, "{e}"),
            Ok((img, _)) => assert_eq!((img.width(), img.height()), (2400, 1800)),
        }
    }

    fn full_size(bytes: &[u8]) -> (u32, u32) {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .unwrap()
            .into_dimensions()
            .unwrap()
    }

    #[test]
    fn reduced_decode_orientation_is_right_at_every_scale() {
        // Left half red, right half blue; stored 4000 × 2400 with orientation 6 (rotate 90°
        // clockwise), so upright the red half is on top.
        let src = RgbImage::from_fn(4000, 2400, |x, _| {
            if x < 2000 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let bytes = with_orientation(&jpeg_bytes(&src), 6);
        // Upright targets that need 1/8, 1/4 and 1/2 (compared in the stored frame).
        for (t, eighths) in [
            (target(100, 100), 1u32),
            (target(500, 900), 2),
            (target(1000, 1800), 4),
        ] {
            let img = reduced(&bytes, t).into_rgb8();
            let (w, h) = scaled_size((2400, 4000), eighths);
            assert_eq!(img.dimensions(), (w, h), "{eighths}/8");
            let (top, bottom) = (img.get_pixel(w / 2, h / 8), img.get_pixel(w / 2, h * 7 / 8));
            assert!(top[0] > 200 && top[2] < 60, "{eighths}/8: top {top:?}");
            assert!(
                bottom[2] > 200 && bottom[0] < 60,
                "{eighths}/8: bottom {bottom:?}"
            );
        }
    }

    #[test]
    fn grey_images_expand_to_rgb_as_image_does() {
        let grey = image::GrayImage::from_fn(37, 23, |x, y| image::Luma([(x * 7 + y * 3) as u8]));
        let ours = flatten_on_white(DynamicImage::ImageLuma8(grey.clone()));
        assert_eq!(ours, DynamicImage::ImageLuma8(grey).to_rgb8());
        // Grey with alpha: the same compositing onto white as RGBA.
        let grey_alpha = image::GrayAlphaImage::from_fn(37, 23, |x, y| {
            image::LumaA([(x * 7) as u8, (y * 11) as u8])
        });
        let ours = flatten_on_white(DynamicImage::ImageLumaA8(grey_alpha.clone()));
        let via_rgba = flatten_on_white(DynamicImage::ImageRgba8(
            DynamicImage::ImageLumaA8(grey_alpha).to_rgba8(),
        ));
        assert_eq!(ours, via_rgba);
    }
}
