//! Each requirement broken one at a time, on a file that is otherwise compliant.

#![allow(clippy::unwrap_used)]

use image::codecs::jpeg::{JpegEncoder, PixelDensity};
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageEncoder, Rgb, RgbImage};
use rythmiq_domain::{PortalRule, RuleSpec};

use super::*;

fn rule(slug: &str) -> PortalRule {
    rythmiq_shared::portals::find(slug).unwrap().unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A head-and-shoulders figure on a plain studio-white backdrop, with some grain so it
/// compresses like a photo.
fn portrait(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (f64::from(x) / f64::from(w), f64::from(y) / f64::from(h));
        let head = ((fx - 0.5) / 0.2).powi(2) + ((fy - 0.4) / 0.26).powi(2) < 1.0;
        let body = fy > 0.7 && (fx - 0.5).abs() < 0.4;
        // Sensor-like grain (a hash, not a pattern JPEG would flatten), 0..=10 levels.
        let n =
            (x.wrapping_mul(0x9E37_79B9) ^ y.wrapping_mul(0x85EB_CA6B)).wrapping_mul(0xC2B2_AE35);
        let grain = ((n >> 24) % 11) as u8;
        if head {
            Rgb([196 + grain, 150 + grain, 120 + grain])
        } else if body {
            Rgb([40 + grain, 50 + grain, 90 + grain])
        } else {
            Rgb([240 + grain, 240 + grain, 240 + grain])
        }
    })
}

/// A JPEG of `img` at `dpi`, written by `image` (JFIF APP0 first).
fn jpeg(img: &DynamicImage, dpi: u16, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut out, quality);
    enc.set_pixel_density(PixelDensity::dpi(dpi));
    enc.encode_image(img).unwrap();
    out
}

/// Our own output for `rule` from the portrait: the baseline every case breaks one thing of.
fn compliant(rule: &PortalRule) -> Vec<u8> {
    let img = DynamicImage::ImageRgb8(portrait(800, 1000));
    crate::fit::fit(&img, rule).unwrap().bytes
}

fn report(bytes: &[u8], name: &str, rule: &RuleSpec) -> Report {
    check(bytes, Some(name), rule, None).unwrap()
}

/// Only `failing` failed, and its message contains `says`.
fn fails_only(r: &Report, failing: &str, says: &str) {
    assert_eq!(r.failed(), vec![failing], "{r:#?}");
    assert!(!r.compliant);
    let line = r.line(failing).unwrap();
    assert!(
        line.message.contains(says),
        "{:?} lacks {says:?}",
        line.message
    );
}

#[test]
fn our_output_is_compliant_with_every_line_named() {
    let neet = rule("neet-ug-2026-photo");
    let r = report(&compliant(&neet), "photo.jpg", &neet);
    assert!(r.compliant, "{r:#?}");
    let names: Vec<&str> = r.checks.iter().map(|l| l.rule.as_str()).collect();
    assert_eq!(
        names,
        [
            "format",
            "pixels",
            "dpi",
            "size",
            "colour",
            "orientation",
            "background",
            "face",
            "face_height",
            "face_centre"
        ]
    );
    // Without the models (as in the API) the face lines say they were not checked, and do not
    // count against the file.
    for face in ["face", "face_height", "face_centre"] {
        let l = r.line(face).unwrap();
        assert_eq!(l.passed, None);
        assert!(l.message.starts_with("not checked: "), "{}", l.message);
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["checks"][7]["passed"], serde_json::Value::Null);
    assert_eq!(json["checks"][0]["passed"], true);
}

#[test]
fn a_renamed_png_is_not_a_jpeg() {
    let neet = rule("neet-ug-2026-photo");
    let img = image::load_from_memory(&compliant(&neet))
        .unwrap()
        .into_rgb8();
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(img.as_raw(), 200, 230, image::ExtendedColorType::Rgb8)
        .unwrap();
    let r = report(&png, "photo.jpg", &neet);
    // A PNG from `image` carries no pHYs either, and is larger than the JPEG window.
    let format = r.line("format").unwrap();
    assert_eq!(format.passed, Some(false));
    assert!(
        format.message.contains("really a PNG renamed"),
        "{}",
        format.message
    );
    assert_eq!(r.line("pixels").unwrap().passed, Some(true));
    // The right content under the wrong name fails the format line alone.
    fails_only(
        &report(&compliant(&neet), "photo.png", &neet),
        "format",
        "named \"photo.png\"",
    );
}

#[test]
fn a_wrong_pixel_size_is_named() {
    let neet = rule("neet-ug-2026-photo");
    let img = DynamicImage::ImageRgb8(portrait(210, 240));
    let r = report(&jpeg(&img, 200, 95), "photo.jpg", &neet);
    fails_only(
        &r,
        "pixels",
        "210 × 240 pixels; this rule needs exactly 200 × 230",
    );
}

#[test]
fn a_missing_or_wrong_dpi_is_named() {
    let neet = rule("neet-ug-2026-photo");
    let img = DynamicImage::ImageRgb8(portrait(200, 230));
    fails_only(
        &report(&jpeg(&img, 72, 95), "p.jpg", &neet),
        "dpi",
        "says 72 DPI",
    );
    // JFIF density unit 0: an aspect ratio, no DPI.
    let mut none = compliant(&neet);
    let (payload, _) = crate::fit::jfif_segment(&none).unwrap();
    none[payload + 7] = 0;
    fails_only(
        &report(&none, "p.jpg", &neet),
        "dpi",
        "does not say its DPI",
    );
}

#[test]
fn a_file_over_the_window_is_named_in_kilobytes() {
    // NTA's own window for the NEET photo is 10–200 KB; a 212 KB file breaks it.
    let mut neet = rule("neet-ug-2026-photo").spec;
    neet.max_kb = 200;
    let mut big = compliant(&rule("neet-ug-2026-photo"));
    // Pad with JPEG comment segments (valid, ignored by decoders) to 212 KiB.
    let target = 212 * 1024;
    while big.len() < target {
        let n = (target - big.len()).clamp(4, 65_000);
        let mut seg = vec![0xFF, 0xFE];
        seg.extend_from_slice(&u16::try_from(n - 2).unwrap().to_be_bytes());
        seg.resize(n, b' ');
        let at = crate::fit::jfif_segment(&big).unwrap().1;
        big.splice(at..at, seg);
    }
    let r = report(&big, "photo.jpg", &neet);
    fails_only(&r, "size", "212 KB; NEET allows 10–200 KB");
    // Under the bottom of the window: 10 KB means 10,240 bytes, whichever a portal counts.
    let tiny = jpeg(&image::load_from_memory(&big).unwrap(), 200, 5);
    assert!(tiny.len() < 10 * 1024, "{}", tiny.len());
    let r = report(&tiny, "photo.jpg", &neet);
    assert_eq!(r.failed(), vec!["size"], "{r:#?}");
}

#[test]
fn cmyk_and_greyscale_photos_fail_the_colour_line() {
    let neet = rule("neet-ug-2026-photo");
    let img = DynamicImage::ImageRgb8(portrait(200, 230));
    // `image` writes grey as three components; jpeg-encoder writes a true one-component JPEG.
    let mut grey = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut grey, 100);
    enc.set_density(jpeg_encoder::PixelDensity::dpi(200));
    enc.encode(
        img.to_luma8().as_raw(),
        200,
        230,
        jpeg_encoder::ColorType::Luma,
    )
    .unwrap();
    fails_only(&report(&grey, "p.jpg", &neet), "colour", "greyscale");
    // Greyscale is fine for a signature.
    let sig = rule("neet-ug-2026-signature");
    let r = report(&compliant(&sig), "s.jpg", &sig);
    assert!(r.compliant, "{r:#?}");
    // A print-ready CMYK JPEG (Adobe APP14), whatever else it breaks.
    let r = report(&fixture("cmyk-adobe.jpg"), "p.jpg", &neet);
    let colour = r.line("colour").unwrap();
    assert_eq!(colour.passed, Some(false));
    assert!(colour.message.contains("CMYK"), "{}", colour.message);
}

#[test]
fn a_photo_turned_by_an_exif_tag_fails_the_orientation_line() {
    let neet = rule("neet-ug-2026-photo");
    let upright = compliant(&neet);
    // An APP1 EXIF segment holding only Orientation = 6, after the JFIF header.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0".to_vec();
    let mut seg = vec![0xFF, 0xE1];
    seg.extend_from_slice(&u16::try_from(tiff.len() + 8).unwrap().to_be_bytes());
    seg.extend_from_slice(b"Exif\0\0");
    seg.append(&mut tiff);
    let mut turned = upright.clone();
    let at = crate::fit::jfif_segment(&turned).unwrap().1;
    turned.splice(at..at, seg);
    let r = report(&turned, "p.jpg", &neet);
    // Decoded upright it is landscape, so the background band moves too; the line that must
    // fail is orientation, with the tag named.
    let o = r.line("orientation").unwrap();
    assert_eq!(o.passed, Some(false), "{r:#?}");
    assert!(o.message.contains("EXIF tag (6)"), "{}", o.message);
    assert_eq!(r.line("pixels").unwrap().passed, Some(true));
}

#[test]
fn the_background_line_reads_the_backdrop() {
    let neet = rule("neet-ug-2026-photo");
    // The same figure before a grey-blue wall.
    let wall = RgbImage::from_fn(200, 230, |x, y| {
        let p = portrait(200, 230).get_pixel(x, y).0;
        if p[0] >= 240 {
            Rgb([120, 140, 170])
        } else {
            Rgb(p)
        }
    });
    let r = report(
        &jpeg(&DynamicImage::ImageRgb8(wall), 200, 100),
        "p.jpg",
        &neet,
    );
    fails_only(&r, "background", "this rule needs a plain white background");
    // The test corpus's astronaut stands before a flag and a dark wall: never a plain backdrop.
    let r = report(&fixture("photos/astronaut.jpg"), "astronaut.jpg", &neet);
    assert_eq!(r.line("background").unwrap().passed, Some(false), "{r:#?}");
    // A rule with `background = "any"` does not judge it.
    let aadhaar = rule("aadhaar-update-document");
    let r = report(&fixture("photos/astronaut.jpg"), "a.jpg", &aadhaar);
    assert_eq!(r.line("background").unwrap().passed, None);
}

#[test]
fn the_raw_corpus_inputs_fail_with_each_line_named() {
    let neet = rule("neet-ug-2026-photo");
    for (name, failing) in [
        // 512 × 512 JPEGs with no DPI, within 10–100 KB.
        (
            "photos/astronaut.jpg",
            ["pixels", "dpi", "orientation", "background"].as_slice(),
        ),
        (
            "photos/coffee.jpg",
            ["pixels", "dpi", "orientation", "background"].as_slice(),
        ),
    ] {
        let r = report(&fixture(name), "x.jpg", &neet);
        assert_eq!(r.failed(), failing, "{name}: {r:#?}");
    }
}

#[test]
fn a_file_that_is_no_image_cannot_be_checked() {
    let neet = rule("neet-ug-2026-photo");
    assert!(check(b"hello, not an image", Some("p.jpg"), &neet, None).is_err());
    let mut cut = compliant(&neet);
    cut.truncate(200);
    assert!(check(&cut, Some("p.jpg"), &neet, None).is_err());
}

#[test]
fn our_pdf_is_read_through_its_page() {
    let aadhaar = rule("aadhaar-update-document");
    let img = DynamicImage::ImageRgb8(portrait(1240, 1754));
    let pdf = crate::fit::fit(&img, &aadhaar).unwrap().bytes;
    let r = report(&pdf, "doc.pdf", &aadhaar);
    assert!(r.compliant, "{r:#?}");
    assert_eq!(r.line("dpi").unwrap().found, "150 DPI");
    assert_eq!(r.line("pixels").unwrap().found, "1240 × 1754 px");
}
