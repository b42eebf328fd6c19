//! Every seeded portal rule, fed real photos (the scikit-image fixtures, as uploaded and enlarged
//! to phone size, one stored sideways with EXIF orientation 6 as phones do) and a rendered A4 scan:
//! every output must be compliant, checked here independently of `fit::verify` too.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{ImageEncoder, Rgb, RgbImage};
use rythmiq_domain::OutputFormat;
use rythmiq_pipeline::{self as pipeline, decode::DecodeLimits, fit};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/photos")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .unwrap();
    out
}

/// An APP1 EXIF segment holding only Orientation = `value`, inserted right after SOI.
fn with_exif_orientation(jpeg: &[u8], value: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&value.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, no next IFD
    let mut seg = b"Exif\0\0".to_vec();
    seg.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(seg.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&seg);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn decoded(bytes: &[u8]) -> RgbImage {
    image::load_from_memory(bytes).unwrap().into_rgb8()
}

/// A 1240 × 1754 (A4 at 150 DPI) grey page: a photo, and dark bars standing for lines of text.
fn scan() -> Vec<u8> {
    let photo = image::imageops::resize(
        &decoded(&fixture("coffee.jpg")),
        600,
        400,
        FilterType::Triangle,
    );
    let mut page = RgbImage::from_pixel(1240, 1754, Rgb([246, 245, 240]));
    image::imageops::overlay(&mut page, &photo, 120, 150);
    for line in 0..30 {
        let y = 700 + line * 34;
        let len = 700 + (line * 97) % 300;
        for x in 120..120 + len {
            for dy in 0..12 {
                page.put_pixel(x, y + dy, Rgb([40, 40, 45]));
            }
        }
    }
    let grey = image::DynamicImage::ImageRgb8(page).into_luma8();
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(grey.as_raw(), 1240, 1754, image::ExtendedColorType::L8)
        .unwrap();
    out
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    let astronaut = decoded(&fixture("astronaut.jpg"));
    // Phone portrait, 3024 × 4032 (enlarging a real photo; decode cost is what matters here).
    let portrait = image::imageops::resize(
        &image::imageops::crop_imm(&astronaut, 64, 0, 384, 512).to_image(),
        3024,
        4032,
        FilterType::Triangle,
    );
    let sideways = image::imageops::rotate270(&portrait);
    let coffee = image::imageops::resize(
        &decoded(&fixture("coffee.jpg")),
        4032,
        2688,
        FilterType::Triangle,
    );
    vec![
        ("astronaut.jpg", fixture("astronaut.jpg")),
        ("coffee.jpg", fixture("coffee.jpg")),
        ("portrait-12mp.jpg", jpeg(&portrait, 90)),
        (
            "portrait-12mp-exif6.jpg",
            with_exif_orientation(&jpeg(&sideways, 90), 6),
        ),
        ("coffee-11mp.jpg", jpeg(&coffee, 90)),
        ("scan-a4.png", scan()),
    ]
}

/// Independent of `fit::verify`: the pixel size as a generic decoder reads it, the byte
/// window, and the format's magic.
fn assert_compliant(name: &str, rule: &rythmiq_domain::PortalRule, bytes: &[u8]) {
    let (min, max) = rule.byte_window();
    let size = bytes.len() as u64;
    assert!(
        (min..=max).contains(&size),
        "{name} → {}: {size} bytes outside {min}–{max}",
        rule.slug
    );
    let (w, h) = (rule.width.unsigned_abs(), rule.height.unsigned_abs());
    match rule.format {
        OutputFormat::Jpeg => {
            let img = decoded(bytes);
            assert_eq!(img.dimensions(), (w, h), "{name} → {}", rule.slug);
            // JFIF APP0 in dots per inch.
            assert_eq!(&bytes[6..11], b"JFIF\0", "{name} → {}", rule.slug);
            assert_eq!(bytes[13], 1);
            let dpi = u16::from_be_bytes([bytes[14], bytes[15]]);
            assert_eq!(i32::from(dpi), rule.dpi, "{name} → {}", rule.slug);
        }
        OutputFormat::Png => {
            let img = decoded(bytes);
            assert_eq!(img.dimensions(), (w, h), "{name} → {}", rule.slug);
        }
        OutputFormat::Pdf => {
            assert!(bytes.starts_with(b"%PDF-"));
            let text = String::from_utf8_lossy(bytes);
            assert!(text.contains(&format!("/Width {w} /Height {h}")), "{name}");
        }
    }
}

#[test]
fn every_seeded_rule_gets_a_compliant_file_from_every_real_photo() {
    let rules = rythmiq_shared::portals::builtin().unwrap();
    assert!(rules.len() >= 9, "portal-rules/ has nine rules");
    let limits = DecodeLimits::default();
    for (name, bytes) in inputs() {
        for rule in &rules {
            let out = pipeline::process_image(&bytes, rule, &limits, None)
                .unwrap_or_else(|e| panic!("{name} → {}: {e}", rule.slug));
            assert_eq!(
                (out.width, out.height),
                (rule.width.unsigned_abs(), rule.height.unsigned_abs())
            );
            assert_eq!(i32::try_from(out.dpi).unwrap(), rule.dpi);
            assert_eq!(out.format, rule.format);
            fit::verify(&out.bytes, rule).unwrap_or_else(|e| panic!("{name} → {}: {e}", rule.slug));
            assert_compliant(name, rule, &out.bytes);
        }
    }
}

#[test]
fn a_phone_photo_stored_sideways_comes_out_upright() {
    // Same pixels stored upright and stored rotated with EXIF orientation 6: the outputs match.
    let inputs = inputs();
    let find = |n: &str| &inputs.iter().find(|(name, _)| *name == n).unwrap().1;
    let rule = rythmiq_shared::portals::find("passport-india-photo")
        .unwrap()
        .unwrap();
    let limits = DecodeLimits::default();
    let run = |name: &str| pipeline::process_image(find(name), &rule, &limits, None).unwrap();
    let (upright, sideways) = (run("portrait-12mp.jpg"), run("portrait-12mp-exif6.jpg"));
    let (a, b) = (decoded(&upright.bytes), decoded(&sideways.bytes));
    let diff: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| f64::from(x.abs_diff(y)))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    assert!(diff < 4.0, "mean difference {diff:.2} grey levels");
}
