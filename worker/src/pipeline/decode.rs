//! Decode stage: turn untrusted upload bytes into an 8-bit RGB image, safely.
//!
//! The format is sniffed from the content (never from a file name), the header is probed and the
//! dimensions are checked before any pixel buffer is allocated, `image::Limits` are always set,
//! EXIF orientation is applied and alpha is flattened onto white, so every later stage sees an
//! upright `Rgb8` image.

use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};

use image::error::{LimitErrorKind, UnsupportedErrorKind};
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, Limits, Rgb, RgbImage};
use rythmiq_shared::domain::ErrorCode;

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
}

impl Default for DecodeLimits {
    /// 20 MiB input, 12,000 × 12,000 pixels, 50 megapixels (as imgproxy), 512 MiB of memory.
    fn default() -> Self {
        DecodeLimits {
            max_input_bytes: 20 * 1024 * 1024,
            max_width: 12_000,
            max_height: 12_000,
            max_pixels: 50_000_000,
            max_alloc_bytes: 512 * 1024 * 1024,
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
    #[error(
        "the uploaded file is not a recognised image (expected JPEG, PNG, WebP, TIFF, BMP or GIF)"
    )]
    UnknownFormat,
    /// The content is a recognised image format that this build cannot read (e.g. AVIF).
    #[error(
        "the image format {format} is not supported (expected JPEG, PNG, WebP, TIFF, BMP or GIF)"
    )]
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
    /// The file is damaged, truncated or uses a feature the decoder cannot handle.
    #[error("the image could not be decoded: {0}")]
    Corrupt(String),
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
        } else {
            ErrorCode::DecodeFailed
        }
    }
}

/// Decode `bytes` into an upright 8-bit RGB image (`DynamicImage::ImageRgb8`), enforcing `limits`.
///
/// Transparent pixels are composited onto white, because portals expect a white background.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > limits.max_input_bytes {
        return Err(DecodeError::TooLarge {
            size,
            max: limits.max_input_bytes,
        });
    }
    // Third-party decoders have panicked on hostile input before; a bad upload must fail the
    // job, not take the worker down with it.
    panic::catch_unwind(AssertUnwindSafe(|| decode_checked(bytes, limits))).unwrap_or_else(|_| {
        Err(DecodeError::Corrupt(
            "the decoder rejected malformed data".to_owned(),
        ))
    })
}

fn decode_checked(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage, DecodeError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|_| DecodeError::Corrupt("the file could not be read".to_owned()))?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }

    // Probe with only the memory limit so the header's real dimensions can be reported; the
    // probe reads headers only, and the dimension limits are applied before any pixel buffer.
    let mut probe_limits = Limits::default();
    probe_limits.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(probe_limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(e, limits))?;

    let (width, height) = decoder.dimensions();
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

    // A broken EXIF block should not cost the user their upload; the pixels are still fine.
    let orientation = decoder.orientation().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "ignoring unreadable EXIF orientation");
        image::metadata::Orientation::NoTransforms
    });

    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, limits))?;
    img.apply_orientation(orientation);
    Ok(DynamicImage::ImageRgb8(flatten_on_white(img)))
}

/// Convert any colour type to 8-bit RGB, compositing transparency onto white.
fn flatten_on_white(img: DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let alpha = u16::from(src[3]);
        let blend = |c: u8| -> u8 {
            let v = (u16::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
            u8::try_from(v).unwrap_or(u8::MAX)
        };
        *dst = Rgb([blend(src[0]), blend(src[1]), blend(src[2])]);
    }
    out
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

    #[test]
    fn every_accepted_format_decodes_to_rgb8() {
        let src = DynamicImage::ImageRgb8(photo(24, 16));
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Jpeg,
            image::ImageFormat::WebP,
            image::ImageFormat::Gif,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
        ] {
            let mut bytes = Cursor::new(Vec::new());
            let encodable = if format == image::ImageFormat::Gif {
                DynamicImage::ImageRgba8(src.to_rgba8())
            } else {
                src.clone()
            };
            encodable.write_to(&mut bytes, format).unwrap();
            let img = decode(bytes.get_ref(), &limits()).unwrap();
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
}
