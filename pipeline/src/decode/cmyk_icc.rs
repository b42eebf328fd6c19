//! Colour: CMYK and YCCK JPEGs decoded to ink values and converted through their ICC profile,
//! and RGB ICC profiles converted to sRGB, with `moxcms`.

use image::RgbImage;

use super::{DecodeError, DecodeLimits, check_dimensions, clean_message};

/// Whether a JPEG's frame has four components (CMYK or YCCK), read from its headers only.
pub(super) fn jpeg_is_four_channel(bytes: &[u8]) -> bool {
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
pub(super) fn jpeg_has_adobe_marker(bytes: &[u8]) -> bool {
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
pub(super) fn decode_jpeg_cmyk(
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

/// JFIF (full-range BT.601) YCbCr to RGB.
pub(super) fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
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
pub(super) fn cmyk_profile_to_srgb(cmyk: &[u8], rgb: &mut [u8], icc: &[u8]) -> bool {
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
pub(super) fn rgb_profile_to_srgb(rgb: &mut RgbImage, icc: &[u8]) {
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
pub(super) fn is_srgb(profile: &moxcms::ColorProfile) -> bool {
    let srgb = moxcms::ColorProfile::new_srgb();
    let close = |a: &moxcms::Xyzd, b: &moxcms::Xyzd| {
        (a.x - b.x).abs() < 0.003 && (a.y - b.y).abs() < 0.003 && (a.z - b.z).abs() < 0.003
    };
    profile.lut_a_to_b_perceptual.is_none()
        && close(&profile.red_colorant, &srgb.red_colorant)
        && close(&profile.green_colorant, &srgb.green_colorant)
        && close(&profile.blue_colorant, &srgb.blue_colorant)
}
