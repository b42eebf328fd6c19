//! TIFFs `image` does not decode (64-bit float, 16-bit float, 32/64-bit integer or signed
//! samples) read with the `tiff` crate and brought to 8 bits; and multi-page TIFFs, whose first
//! page is the one used.

use std::io::Cursor;

use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};
use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use super::error::clean_message;
use super::{DecodeError, DecodeLimits, check_dimensions};

/// The warning for a TIFF with more than one page.
pub(super) const MULTI_PAGE_WARNING: &str =
    "the TIFF file has more than one page; only the first page was used";

/// Whether a TIFF has a second page (image file directory). Reads the first directory only.
pub(super) fn has_more_pages(bytes: &[u8]) -> bool {
    Decoder::new(Cursor::new(bytes)).is_ok_and(|d| d.more_images())
}

fn damaged(e: &tiff::TiffError) -> DecodeError {
    match e {
        tiff::TiffError::UnsupportedError(u) => {
            DecodeError::Corrupt(clean_message(&format!("TIFF: {u}")))
        }
        tiff::TiffError::LimitsExceeded => {
            DecodeError::Corrupt("TIFF: decoding would need more memory than the limit".to_owned())
        }
        other => DecodeError::Damaged {
            format: "TIFF",
            detail: clean_message(&other.to_string()),
        },
    }
}

/// Decode the first page of a TIFF whose sample format `image` refuses, scaled to 8 bits:
/// integers by their top byte (signed ones offset to unsigned first), floats from the nominal
/// `[0, 1]` range (or from `[0, max]` when larger values occur, as with floats that store
/// 0–255 or 0–65535).
pub(super) fn decode_tiff_samples(
    bytes: &[u8],
    limits: &DecodeLimits,
) -> Result<DynamicImage, DecodeError> {
    let mut tiff_limits = Limits::default();
    tiff_limits.decoding_buffer_size =
        usize::try_from(limits.max_alloc_bytes).unwrap_or(usize::MAX);
    let mut decoder = Decoder::new(Cursor::new(bytes))
        .map_err(|e| damaged(&e))?
        .with_limits(tiff_limits);
    let (width, height) = decoder.dimensions().map_err(|e| damaged(&e))?;
    check_dimensions(width, height, limits)?;
    let channels: u64 = match decoder.colortype().map_err(|e| damaged(&e))? {
        ColorType::Gray(_) => 1,
        ColorType::GrayA(_) => 2,
        ColorType::RGB(_) => 3,
        ColorType::RGBA(_) => 4,
        other => {
            return Err(DecodeError::Corrupt(clean_message(&format!(
                "TIFF: colour type {other:?} is not supported"
            ))));
        }
    };
    // Planar files (PlanarConfiguration 2) store one plane per sample: R…, G…, B….
    let planar = decoder
        .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
        .map_err(|e| damaged(&e))?
        == Some(2);
    let mut result = DecodingResult::U8(Vec::new());
    decoder
        .read_image_to_buffer(&mut result)
        .map_err(|e| damaged(&e))?;
    let mut samples = to_u8(result);
    let expected = u64::from(width) * u64::from(height) * channels;
    if u64::try_from(samples.len()).ok() != Some(expected) {
        return Err(DecodeError::Damaged {
            format: "TIFF",
            detail: "its pixel data is shorter than its header announces".to_owned(),
        });
    }
    if planar && channels > 1 {
        samples = interleave(&samples, usize::try_from(channels).unwrap_or(1));
    }
    let wrong = || DecodeError::Corrupt("TIFF: wrong pixel buffer size".to_owned());
    Ok(match channels {
        1 => {
            DynamicImage::ImageLuma8(GrayImage::from_raw(width, height, samples).ok_or_else(wrong)?)
        }
        2 => DynamicImage::ImageLumaA8(
            GrayAlphaImage::from_raw(width, height, samples).ok_or_else(wrong)?,
        ),
        3 => DynamicImage::ImageRgb8(RgbImage::from_raw(width, height, samples).ok_or_else(wrong)?),
        _ => {
            DynamicImage::ImageRgba8(RgbaImage::from_raw(width, height, samples).ok_or_else(wrong)?)
        }
    })
}

/// Planes (all of the first sample, then all of the second…) to interleaved pixels.
fn interleave(planes: &[u8], channels: usize) -> Vec<u8> {
    let pixels = planes.len() / channels.max(1);
    let mut out = vec![0; planes.len()];
    if pixels == 0 {
        return out;
    }
    for (c, plane) in planes.chunks_exact(pixels).enumerate() {
        for (i, &v) in plane.iter().enumerate() {
            out[i * channels + c] = v;
        }
    }
    out
}

/// Every sample scaled to 8 bits (see [`decode_tiff_samples`]).
fn to_u8(result: DecodingResult) -> Vec<u8> {
    // The top byte of an unsigned sample of `bits` bits.
    fn top(v: u64, bits: u32) -> u8 {
        u8::try_from(v >> (bits - 8)).unwrap_or(u8::MAX)
    }
    // A signed sample moved to the unsigned range of the same width.
    fn unsigned(v: i64, bits: u32) -> u64 {
        u64::try_from(v + (1i64 << (bits - 1))).unwrap_or(0)
    }
    match result {
        DecodingResult::U8(v) => v,
        DecodingResult::U16(v) => v.into_iter().map(|s| top(s.into(), 16)).collect(),
        DecodingResult::U32(v) => v.into_iter().map(|s| top(s.into(), 32)).collect(),
        DecodingResult::U64(v) => v.into_iter().map(|s| top(s, 64)).collect(),
        DecodingResult::I8(v) => v
            .into_iter()
            .map(|s| top(unsigned(s.into(), 8), 8))
            .collect(),
        DecodingResult::I16(v) => v
            .into_iter()
            .map(|s| top(unsigned(s.into(), 16), 16))
            .collect(),
        DecodingResult::I32(v) => v
            .into_iter()
            .map(|s| top(unsigned(s.into(), 32), 32))
            .collect(),
        // i64 ± 2^63 would overflow; the top byte of the offset value is the top byte with its
        // sign bit flipped.
        DecodingResult::I64(v) => v.into_iter().map(|s| (s.to_be_bytes()[0]) ^ 0x80).collect(),
        DecodingResult::F16(v) => floats_to_u8(v.into_iter().map(|s| f64::from(s.to_f32()))),
        DecodingResult::F32(v) => floats_to_u8(v.into_iter().map(f64::from)),
        DecodingResult::F64(v) => floats_to_u8(v.into_iter()),
    }
}

/// Float samples to 8 bits: `[0, 1]` maps to 0–255, unless some finite sample is above 1, in
/// which case `[0, max]` does. Negative values and NaN become 0.
fn floats_to_u8(samples: impl Iterator<Item = f64>) -> Vec<u8> {
    let samples: Vec<f64> = samples.collect();
    let max = samples
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let scale = if max > 1.0 { 255.0 / max } else { 255.0 };
    samples
        .into_iter()
        .map(|v| {
            let v = if v.is_nan() { 0.0 } else { v };
            // Clamped to 0–255 first, so the cast cannot truncate.
            (v * scale).round().clamp(0.0, 255.0) as u8
        })
        .collect()
}
