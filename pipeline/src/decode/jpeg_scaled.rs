//! Reduced-scale JPEG decoding with libjpeg-turbo's DCT scaling (see the module documentation of
//! [`super`]): the scale choice, libjpeg's strict error manager and the scaled decode.

use std::panic::{self, AssertUnwindSafe};

use image::RgbImage;
use image::metadata::Orientation;

use super::progressive::without_unread_ac_scans;
use super::{DecodeError, DecodeLimits, TargetSize};

/// Long side, in pixels, a reduced decode keeps at least (unless the original is smaller): near
/// QUALITY's analysis size, so its signals are measured at about the scale they were calibrated
/// at. A little under 512 so that 8 and 12 MP photos (3,264 and 4,032 pixels wide) may use 1/8.
pub(super) const REDUCED_MIN_LONG_SIDE: u32 = 400;

/// Whether an EXIF orientation swaps width and height.
pub(super) fn swaps_axes(orientation: Orientation) -> bool {
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
pub(super) fn reduced_scale(
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
/// `Ok(None)` means "decode at full size instead": the scale would be 8/8, the file is CMYK or
/// 12-bit, the memory estimate breaks the limit, or libjpeg-turbo stopped on its headers (see
/// [`strict_error_mgr`]). A warning or error about the compressed data itself is
/// [`DecodeError::Damaged`]: libjpeg would have filled in what it could not read.
pub(super) fn decode_jpeg_reduced(
    bytes: &[u8],
    limits: &DecodeLimits,
    stored: (u32, u32),
    orientation: Orientation,
    target: TargetSize,
) -> Result<Option<RgbImage>, DecodeError> {
    let Some((eighths, want)) = reduced_scale(stored, orientation, target) else {
        return Ok(None);
    };
    // libjpeg keeps a progressive file's coefficients at full size (two bytes a sample, at most
    // three full-resolution components) besides its output.
    let coefficients = u64::from(stored.0) * u64::from(stored.1) * 6;
    let output = u64::from(want.0) * u64::from(want.1) * 3;
    if coefficients + output > limits.max_alloc_bytes {
        return Ok(None);
    }
    // At 1/8 a progressive file's AC scans that the 1 × 1 IDCT never reads are dropped first:
    // the pixels are the same, the entropy decoding of those scans is saved.
    let pruned = (eighths == 1)
        .then(|| without_unread_ac_scans(bytes))
        .flatten();
    match scaled_decode(pruned.as_deref().unwrap_or(bytes), stored, eighths, want) {
        Ok(rgb) => Ok(Some(rgb)),
        Err(ScaledFailure::Stopped(LibjpegStop::Damage)) => Err(corrupt_data()),
        Err(reason) => {
            tracing::debug!(
                reason = %reason,
                "reduced JPEG decode declined; decoding at full size"
            );
            Ok(None)
        }
    }
}

/// What a JPEG whose compressed data libjpeg cannot read to the end is refused with.
pub(super) fn corrupt_data() -> DecodeError {
    DecodeError::Damaged {
        format: "JPEG",
        detail: "its compressed image data is corrupt or cut short".to_owned(),
    }
}

/// libjpeg's state while it reads the frame's first scan (`DSTATE_PRELOAD` in `jpegint.h`); every
/// later state also reads compressed data. Before it, only header markers have been read.
const DSTATE_PRELOAD: std::os::raw::c_int = 203;

/// Why libjpeg stopped a decode: carried by the unwind out of its callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LibjpegStop {
    /// `error_exit` while reading the headers: the file uses something this build cannot
    /// decode (12-bit samples, arithmetic coding…) or its headers are broken.
    Error,
    /// `emit_message` with a negative level while reading the headers (an unknown JFIF
    /// revision, an odd Adobe transform code, a bad ICC marker): nothing about the pixels yet,
    /// so the full decoder judges the file.
    Warning,
    /// A warning or error while reading the compressed data (libjpeg-turbo's "Premature end of
    /// JPEG file", "Corrupt JPEG data: …"): libjpeg would go on with made-up data (a truncated
    /// file gets grey rows, a damaged scan skips ahead), so the file is damaged.
    Damage,
}

impl LibjpegStop {
    /// The stop for a message raised in libjpeg state `state` (`global_state`).
    fn at(state: std::os::raw::c_int, header_stop: LibjpegStop) -> LibjpegStop {
        if state >= DSTATE_PRELOAD {
            LibjpegStop::Damage
        } else {
            header_stop
        }
    }
}

/// Why a scaled decode gave no image.
#[derive(Debug)]
pub(super) enum ScaledFailure {
    /// libjpeg stopped itself (an error or a warning, see [`LibjpegStop`]).
    Stopped(LibjpegStop),
    /// Something else: a size or colour space the caller does not expect, an I/O error.
    Other(String),
}

impl std::fmt::Display for ScaledFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaledFailure::Stopped(stop) => write!(f, "libjpeg stopped: {stop:?}"),
            ScaledFailure::Other(reason) => f.write_str(reason),
        }
    }
}

/// libjpeg's error manager for reduced decodes: errors *and warnings* unwind out of libjpeg
/// (built with `-fexceptions`, mozjpeg-sys' `unwinding` feature) to [`decode_jpeg_scaled`]'s
/// `catch_unwind`. `mozjpeg`'s own manager silences warnings, so a truncated file would decode
/// "successfully" with grey rows; here any warning sends the file to the full decoder, which
/// accepts or rejects it with the messages users already get. No message text is needed, so the
/// message tables stay empty.
pub(super) fn strict_error_mgr() -> mozjpeg_sys::jpeg_error_mgr {
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

extern "C-unwind" fn libjpeg_error_exit(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    // `resume_unwind` skips the panic hook: a bad upload is not worth a log line with a backtrace.
    panic::resume_unwind(Box::new(LibjpegStop::at(
        cinfo.global_state,
        LibjpegStop::Error,
    )));
}

extern "C-unwind" fn libjpeg_emit_message(
    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    // Levels 0 and up are trace messages (off); -1 is a warning about the data. The message
    // code sits behind a raw pointer (`cinfo.err`), out of reach without `unsafe`, so the phase
    // tells a header oddity from damaged data.
    if level < 0 {
        panic::resume_unwind(Box::new(LibjpegStop::at(
            cinfo.global_state,
            LibjpegStop::Warning,
        )));
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
pub(super) fn decode_jpeg_scaled(
    bytes: &[u8],
    stored: (u32, u32),
    eighths: u32,
    want: (u32, u32),
) -> Result<RgbImage, String> {
    scaled_decode(bytes, stored, eighths, want).map_err(|e| e.to_string())
}

/// [`decode_jpeg_scaled`], with libjpeg's own stops kept apart from the rest.
pub(super) fn scaled_decode(
    bytes: &[u8],
    stored: (u32, u32),
    eighths: u32,
    want: (u32, u32),
) -> Result<RgbImage, ScaledFailure> {
    use mozjpeg::ColorSpace;

    let scale = u8::try_from(eighths)
        .ok()
        .filter(|s| (1..=8).contains(s))
        .ok_or_else(|| ScaledFailure::Other(format!("scale {eighths}/8")))?;
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
    match decoded {
        Ok(result) => result.map_err(ScaledFailure::Other),
        Err(payload) => Err(match payload.downcast_ref::<LibjpegStop>() {
            Some(stop) => ScaledFailure::Stopped(*stop),
            None => ScaledFailure::Other("libjpeg panicked".to_owned()),
        }),
    }
}

/// Whether libjpeg-turbo reads every scan of `bytes` without a warning about the data: the
/// arbiter for files zune-jpeg's strict mode refuses. Decoded at 1/8 scale, which still
/// entropy-decodes every coefficient (where damage shows) but does little else.
pub(super) fn libjpeg_verdict(bytes: &[u8]) -> Result<(), LibjpegStop> {
    use mozjpeg::ColorSpace;

    let read = panic::catch_unwind(AssertUnwindSafe(|| -> std::io::Result<()> {
        let mut decoder = mozjpeg::Decompress::builder()
            .with_err(strict_error_mgr())
            .from_mem(bytes)?;
        decoder.scale(1);
        decoder.do_block_smoothing(false);
        let mut started = match decoder.color_space() {
            ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => {
                decoder.to_colorspace(ColorSpace::JCS_CMYK)?
            }
            _ => decoder.rgb()?,
        };
        let _: Vec<u8> = started.read_scanlines()?;
        started.finish()
    }));
    match read {
        Ok(Ok(())) => Ok(()),
        // The mozjpeg wrapper's own errors (a suspended source): not a verdict on the data.
        Ok(Err(_)) => Err(LibjpegStop::Error),
        Err(payload) => Err(payload
            .downcast_ref::<LibjpegStop>()
            .copied()
            .unwrap_or(LibjpegStop::Error)),
    }
}
