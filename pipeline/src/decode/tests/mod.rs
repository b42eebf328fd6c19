#![allow(clippy::unwrap_used)]

use super::cmyk_icc::*;
use super::deadline::OVERDUE_DECODES;
use super::jpeg_scaled::*;
use super::progressive::*;
use super::*;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, Rgba};
use image::{Rgb, RgbImage};
use rythmiq_domain::ErrorCode;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

#[path = "../../../tests/support/samples.rs"]
mod samples;

mod damage;
use samples::{photo, small_photo_in_every_format};

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32fast::hash(&typed).to_be_bytes());
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
fn truncated_jpeg_is_refused_as_incomplete() {
    let full = jpeg_bytes(&photo(300, 200));
    for cut in [3usize, 20, 100, 400, full.len() / 2, full.len() - 2] {
        let err = decode(&full[..cut], &limits()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::DecodeFailed, "cut at {cut}: {err}");
        if cut >= 20 {
            assert!(
                err.to_string().contains("incomplete or damaged"),
                "cut at {cut}: {err}"
            );
        }
    }
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
    while OVERDUE_DECODES.load(Ordering::SeqCst) > 0 && waited.elapsed() < Duration::from_secs(20) {
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
    decode_for_target_timed(bytes, &limits(), t).unwrap().image
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
    let big = image::imageops::resize(&pixels, 2048, 2048, image::imageops::FilterType::Nearest);
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
            assert!(err.contains("Damage"), "{what} cut at {cut}: {err}");
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
    let err = decode_jpeg_scaled(b"\x89PNG\r\n\x1a\nnot a jpeg", (8, 8), 1, (1, 1)).unwrap_err();
    assert!(err.contains("Error"), "{err}");
    // CMYK is left to the ink-preserving full decode.
    let cmyk = fixture("cmyk-adobe.jpg");
    assert!(decode_jpeg_scaled(&cmyk, full_size(&cmyk), 1, (1, 1)).is_err());
    // Through the stage: a truncated large JPEG is refused as incomplete, never returned with
    // libjpeg's grey rows (or zune-jpeg's).
    let big = jpeg_bytes(&photo(2400, 1800));
    let cut = &big[..big.len() * 2 / 3];
    let err = decode_for_target_timed(cut, &limits(), target(200, 230)).unwrap_err();
    assert!(matches!(err, DecodeError::Damaged { .. }), "{err}");
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
