#![allow(clippy::unwrap_used)]

use super::crop::*;
use super::jpeg::*;
use super::png::*;
use super::resize::*;
use super::rules::*;
use super::verify::*;
use super::*;
use image::{GrayImage, Luma, Rgba, RgbaImage};
use image::{Rgb, RgbImage};
use rythmiq_domain::{DocumentKind, RuleSpec};
use std::sync::OnceLock;
use uuid::Uuid;

fn rule(
    kind: DocumentKind,
    format: OutputFormat,
    (width, height): (i32, i32),
    dpi: i32,
    (min_kb, max_kb): (i32, i32),
) -> PortalRule {
    PortalRule {
        id: Uuid::nil(),
        version: 1,
        spec: RuleSpec {
            face: None,
            slug: "test-portal".to_owned(),
            name: "Test portal".to_owned(),
            kind,
            width,
            height,
            dpi,
            format,
            min_kb,
            max_kb,
            filename_pattern: "{slug}_{kind}_{job_id}".to_owned(),
            background: "any".to_owned(),
            text_check: Default::default(),
        },
    }
}

/// `base` with some of its values changed.
fn with(base: &PortalRule, change: impl FnOnce(&mut RuleSpec)) -> PortalRule {
    let mut r = base.clone();
    change(&mut r.spec);
    r
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
}

/// A 3000×4000 camera-like photo: smooth gradients, a face-ish ellipse, hard-edged shapes and
/// sensor noise (noise matters: flat images compress unrealistically well).
fn photo() -> &'static DynamicImage {
    static PHOTO: OnceLock<DynamicImage> = OnceLock::new();
    PHOTO.get_or_init(|| {
        let (w, h) = (3000u32, 4000u32);
        let mut rng = Rng(7);
        let img = RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let mut c = [
                40.0 + 150.0 * fx,
                60.0 + 120.0 * fy,
                90.0 + 80.0 * (1.0 - fx),
            ];
            let (dx, dy) = ((fx - 0.5) / 0.25, (fy - 0.4) / 0.2);
            if dx * dx + dy * dy < 1.0 {
                c = [220.0 - 40.0 * fy, 180.0 - 30.0 * fy, 150.0];
            }
            if (x / 150 + y / 150) % 7 == 0 && fy > 0.7 {
                c = [30.0, 30.0, 60.0];
            }
            let n = (rng.next() % 41) as f32 - 20.0;
            Rgb(c.map(|v| (v + n).clamp(0.0, 255.0) as u8))
        });
        DynamicImage::ImageRgb8(img)
    })
}

/// A 1200×400 signature: dark strokes on white paper with slight scanner noise.
fn signature() -> DynamicImage {
    let (w, h) = (1200u32, 400u32);
    let mut rng = Rng(11);
    let img = RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let wave = 200.0 + 90.0 * (fx / 70.0).sin() + 30.0 * (fx / 23.0).cos();
        let loops = 200.0 + 120.0 * (fx / 110.0).cos();
        let ink = (200..1000).contains(&x)
            && ((fy - wave).abs() < 4.0 || ((fy - loops).abs() < 3.0 && x % 300 < 180));
        let n = (rng.next() % 9) as u8;
        if ink {
            Rgb([20 + n, 25 + n, 70 + n])
        } else {
            Rgb([250 - n, 250 - n, 248 - n])
        }
    });
    DynamicImage::ImageRgb8(img)
}

fn assert_compliant(out: &FitOutput, rule: &PortalRule) {
    let (min, max) = rule.byte_window();
    let size = out.bytes.len() as u64;
    assert!(size >= min && size <= max, "{size} not in {min}..={max}");
    assert_eq!(
        (out.width, out.height),
        (rule.width as u32, rule.height as u32)
    );
    assert_eq!(out.dpi, rule.dpi as u32);
    assert_eq!(out.format, rule.format);
    verify(&out.bytes, rule).unwrap();
}

#[test]
fn neet_photo_jpeg_is_compliant() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Jpeg,
        (200, 230),
        200,
        (10, 100),
    );
    let out = fit(photo(), &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    // The JFIF header itself says 200 DPI.
    assert_eq!(&out.bytes[6..11], b"JFIF\0");
    assert_eq!(out.bytes[13], 1);
    assert_eq!(&out.bytes[14..18], &[0, 200, 0, 200]);
}

#[test]
fn ibps_signature_lands_in_window_with_padding_warning() {
    let r = rule(
        DocumentKind::Signature,
        OutputFormat::Jpeg,
        (140, 60),
        200,
        (10, 20),
    );
    let out = fit(&signature(), &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.bytes.len() as u64 >= 10 * 1024);
    assert!(
        out.warnings.iter().any(|w| w.contains("padding")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn passport_photo_jpeg_under_max_only() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Jpeg,
        (630, 810),
        300,
        (0, 250),
    );
    let out = fit(photo(), &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.warnings.is_empty());
}

#[test]
fn tight_jpeg_window_uses_quality_search() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Jpeg,
        (600, 800),
        300,
        (20, 50),
    );
    let out = fit(photo(), &r).unwrap();
    assert_compliant(&out, &r);
}

#[test]
fn png_photo_rule_has_phys_and_fits() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Png,
        (200, 230),
        300,
        (5, 200),
    );
    let out = fit(photo(), &r).unwrap();
    assert_compliant(&out, &r);
    // pHYs sits right after IHDR: 11811 px/m = 300 DPI, unit metre.
    assert_eq!(&out.bytes[37..41], b"pHYs");
    assert_eq!(
        u32::from_be_bytes(out.bytes[41..45].try_into().unwrap()),
        11_811
    );
    assert_eq!(out.bytes[49], 1);
}

#[test]
fn png_signature_is_padded_to_min() {
    let r = rule(
        DocumentKind::Signature,
        OutputFormat::Png,
        (300, 100),
        150,
        (40, 60),
    );
    let out = fit(&signature(), &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.warnings.iter().any(|w| w.contains("padding")));
}

#[test]
fn png_signature_falls_back_to_greyscale() {
    let sig = signature();
    let pixels = resize_to_target(
        &sig,
        DocumentKind::Signature,
        &Target::from_rule(&rule(
            DocumentKind::Signature,
            OutputFormat::Png,
            (600, 200),
            200,
            (0, 1000),
        ))
        .unwrap(),
        &mut Vec::new(),
    )
    .unwrap()
    .into_rgb();
    let rgb_len = encode_png(pixels.as_raw(), 600, 200, ::png::ColorType::Rgb, 200)
        .unwrap()
        .len() as u64;
    // Allow just under the RGB size, so only the greyscale version can fit.
    let max_kb = i32::try_from((rgb_len - 1) / 1000).unwrap();
    let r = rule(
        DocumentKind::Signature,
        OutputFormat::Png,
        (600, 200),
        200,
        (0, max_kb),
    );
    let out = fit(&sig, &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.warnings.iter().any(|w| w.contains("greyscale")));
}

#[test]
fn impossible_jpeg_rule_is_size_exceeded() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Jpeg,
        (1200, 1600),
        300,
        (0, 1),
    );
    let err = fit(photo(), &r).unwrap_err();
    assert!(
        matches!(err, FitError::SizeExceeded { max: 1000, .. }),
        "{err}"
    );
    assert_eq!(err.code(), ErrorCode::SizeExceeded);
}

#[test]
fn impossible_png_rule_is_size_exceeded() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Png,
        (600, 800),
        300,
        (0, 5),
    );
    let err = fit(photo(), &r).unwrap_err();
    assert!(matches!(err, FitError::SizeExceeded { .. }), "{err}");
}

#[test]
fn pdf_document_is_compliant() {
    let r = rule(
        DocumentKind::Document,
        OutputFormat::Pdf,
        (1240, 1754),
        150,
        (50, 400),
    );
    let out = fit(photo(), &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.bytes.starts_with(b"%PDF-1.4"));
    // Page is 1240/150 × 72 points wide.
    let text = String::from_utf8_lossy(&out.bytes);
    assert!(text.contains("/MediaBox [0 0 595.20 841.92]"));
    // Every xref offset points at its object.
    let xref = text.rfind("xref\n").unwrap();
    for (i, line) in text[xref..].lines().skip(3).take(5).enumerate() {
        let offset: usize = line[..10].parse().unwrap();
        assert!(
            text[offset..].starts_with(&format!("{} 0 obj", i + 1)),
            "{line}"
        );
    }
}

#[test]
fn small_pdf_is_padded_to_min() {
    let r = rule(
        DocumentKind::Document,
        OutputFormat::Pdf,
        (100, 100),
        100,
        (200, 300),
    );
    let out = fit(&signature(), &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.warnings.iter().any(|w| w.contains("padding")));
}

#[test]
fn small_input_is_enlarged_with_warning() {
    let small = DynamicImage::ImageRgb8(RgbImage::from_fn(50, 60, |x, y| {
        Rgb([(x * 5) as u8, (y * 4) as u8, 90])
    }));
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Jpeg,
        (200, 230),
        200,
        (0, 100),
    );
    let out = fit(&small, &r).unwrap();
    assert_compliant(&out, &r);
    assert!(out.warnings.iter().any(|w| w.contains("enlarged")));
}

#[test]
fn non_rgb_inputs_are_accepted_and_alpha_becomes_white() {
    let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(400, 400, Rgba([0, 0, 0, 0])));
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Png,
        (100, 100),
        100,
        (0, 50),
    );
    let out = fit(&clear, &r).unwrap();
    let back = image::load_from_memory(&out.bytes).unwrap().into_rgb8();
    assert!(back.pixels().all(|p| *p == Rgb([255; 3])));

    let grey = DynamicImage::ImageLuma8(GrayImage::from_pixel(300, 300, Luma([40])));
    assert_compliant(&fit(&grey, &r).unwrap(), &r);
}

/// A grey A4-like page stored as RGB with three equal channels, as decode hands a grey scan
/// over: paper grain, text-like bars and a photo-like gradient.
fn grey_page(w: u32, h: u32) -> RgbImage {
    let mut rng = Rng(11);
    RgbImage::from_fn(w, h, |x, y| {
        let mut v = 225.0 + (rng.next() % 13) as f32 - 6.0;
        if (y / 9) % 3 == 0 && (x / 40) % 5 != 4 && x > 60 && x < w - 60 {
            v = 40.0 + (rng.next() % 30) as f32;
        }
        if x < w / 3 && y < h / 4 {
            v = 60.0 + 150.0 * x as f32 / (w / 3) as f32 + (rng.next() % 9) as f32;
        }
        let v = v.clamp(0.0, 255.0) as u8;
        Rgb([v, v, v])
    })
}

fn max_and_mean_diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    (max, sum as f64 / a.len() as f64)
}

#[test]
fn grey_inputs_take_one_channel_with_the_same_pixels() {
    let page = grey_page(827, 1170);
    let crop = (0, 0, 827, 1170);
    let grey = grey_crop(&page, crop).unwrap();
    assert_eq!(grey.as_raw().len(), 827 * 1170);

    // Resize: one channel gives exactly the pixels of the three equal ones.
    let one = resample(&grey, crop, 620, 877).unwrap();
    let three = resample(&page, crop, 620, 877).unwrap();
    assert!(three.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    let red: Vec<u8> = three.pixels().map(|p| p[0]).collect();
    assert_eq!(one.as_raw(), &red);

    // Encode: a one-component JPEG against the YCbCr one at the same quality differ by
    // rounding only (Y is computed in fixed point from three equal values; Cb = Cr = 128).
    let decode = |jpeg: &[u8]| image::load_from_memory(jpeg).unwrap().into_luma8();
    let luma = encode_jpeg(&Pixels::Grey(one), 92, 150, Chroma::Full).unwrap();
    let ycbcr = encode_jpeg(&Pixels::Rgb(three), 92, 150, Chroma::Full).unwrap();
    assert_eq!(
        image::load_from_memory(&luma).unwrap().color(),
        image::ColorType::L8
    );
    let (max, mean) = max_and_mean_diff(decode(&luma).as_raw(), decode(&ycbcr).as_raw());
    assert!(max <= 2 && mean < 0.1, "max {max}, mean {mean:.3}");
    assert!(
        luma.len() < ycbcr.len(),
        "{} vs {}",
        luma.len(),
        ycbcr.len()
    );

    // A single coloured pixel, even one the probe grid skips, keeps the RGB path.
    let mut tinted = page.clone();
    tinted.put_pixel(413, 601, Rgb([120, 121, 120]));
    assert!(grey_crop(&tinted, crop).is_none());
    assert!(grey_crop(&tinted, (0, 602, 827, 500)).is_some());
    assert!(grey_crop(photo().as_rgb8().unwrap(), (0, 0, 3000, 4000)).is_none());
}

#[test]
fn grey_inputs_give_compliant_files_with_one_component_except_photos() {
    let page = DynamicImage::ImageRgb8(grey_page(827, 1170));
    let cases = [
        (
            DocumentKind::Document,
            OutputFormat::Pdf,
            (620, 877),
            75,
            (0, 2000),
        ),
        (
            DocumentKind::Photo,
            OutputFormat::Jpeg,
            (200, 230),
            200,
            (10, 100),
        ),
        (
            DocumentKind::Signature,
            OutputFormat::Jpeg,
            (140, 60),
            200,
            (10, 20),
        ),
    ];
    for (kind, format, size, dpi, window) in cases {
        let r = rule(kind, format, size, dpi, window);
        let out = fit(&page, &r).unwrap();
        assert_compliant(&out, &r);
        let jpeg = find(&out.bytes, &[0xFF, 0xD8, 0xFF], 0).unwrap();
        let decoded = image::load_from_memory(&out.bytes[jpeg..]).unwrap();
        let components = if kind == DocumentKind::Photo {
            image::ColorType::Rgb8
        } else {
            image::ColorType::L8
        };
        assert_eq!(decoded.color(), components, "{kind:?}");
        if format == OutputFormat::Pdf {
            assert!(find(&out.bytes, b"/ColorSpace /DeviceGray", 0).is_some());
        }
    }
    // Colour inputs are untouched: YCbCr JPEG, DeviceRGB.
    let r = rule(
        DocumentKind::Document,
        OutputFormat::Pdf,
        (620, 877),
        75,
        (0, 2000),
    );
    let out = fit(photo(), &r).unwrap();
    assert!(find(&out.bytes, b"/ColorSpace /DeviceRGB", 0).is_some());
    let jpeg = find(&out.bytes, &[0xFF, 0xD8, 0xFF], 0).unwrap();
    let decoded = image::load_from_memory(&out.bytes[jpeg..]).unwrap();
    assert_eq!(decoded.color(), image::ColorType::Rgb8);
}

#[test]
fn centre_crop_keeps_aspect_and_centres() {
    assert_eq!(centre_crop(3000, 4000, 200, 230), (0, 275, 3000, 3450));
    assert_eq!(centre_crop(1200, 400, 140, 60), (133, 0, 933, 400));
    assert_eq!(centre_crop(100, 100, 100, 100), (0, 0, 100, 100));
    assert_eq!(centre_crop(1, 5000, 5000, 1), (0, 2499, 1, 1));
}

#[test]
fn verify_rejects_wrong_dpi_size_format_and_window() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Jpeg,
        (200, 230),
        200,
        (10, 100),
    );
    let out = fit(photo(), &r).unwrap();
    let wrong_dpi = with(&r, |s| s.dpi = 300);
    assert!(matches!(
        verify(&out.bytes, &wrong_dpi),
        Err(FitError::NotCompliant(_))
    ));
    let wrong_size = with(&r, |s| s.width = 201);
    assert!(matches!(
        verify(&out.bytes, &wrong_size),
        Err(FitError::NotCompliant(_))
    ));
    let wrong_format = with(&r, |s| s.format = OutputFormat::Png);
    assert!(matches!(
        verify(&out.bytes, &wrong_format),
        Err(FitError::NotCompliant(_))
    ));
    let wrong_window = with(&r, |s| {
        s.max_kb = 1;
        s.min_kb = 0;
    });
    assert!(matches!(
        verify(&out.bytes, &wrong_window),
        Err(FitError::NotCompliant(_))
    ));
    // Truncation is caught.
    let cut = &out.bytes[..out.bytes.len() - 100];
    assert!(verify(cut, &r).is_err());
    // A JPEG without a DPI (aspect-ratio-only JFIF) is rejected.
    let mut no_dpi = out.bytes.clone();
    no_dpi[13] = 0;
    assert!(matches!(
        verify(&no_dpi, &r),
        Err(FitError::NotCompliant(_))
    ));
    assert!(verify(b"", &r).is_err());
    assert!(
        verify(
            b"%PDF-",
            &with(&r, |s| {
                s.format = OutputFormat::Pdf;
                s.min_kb = 0;
            })
        )
        .is_err()
    );
}

#[test]
fn verify_rejects_png_without_phys_or_with_bad_crc() {
    let r = rule(
        DocumentKind::Photo,
        OutputFormat::Png,
        (64, 64),
        300,
        (0, 100),
    );
    let out = fit(photo(), &r).unwrap();
    // Remove pHYs (21 bytes after IHDR).
    let mut no_phys = out.bytes[..33].to_vec();
    no_phys.extend_from_slice(&out.bytes[54..]);
    assert!(
        verify(&no_phys, &r)
            .unwrap_err()
            .to_string()
            .contains("pHYs")
    );
    let mut bad_crc = out.bytes.clone();
    bad_crc[45] ^= 1;
    assert!(
        verify(&bad_crc, &r)
            .unwrap_err()
            .to_string()
            .contains("checksum")
    );
}

#[test]
fn invalid_rules_fail_cleanly() {
    let base = rule(
        DocumentKind::Photo,
        OutputFormat::Jpeg,
        (200, 230),
        200,
        (10, 100),
    );
    for bad in [
        with(&base, |s| s.width = 0),
        with(&base, |s| s.height = -5),
        with(&base, |s| s.width = 70_000),
        with(&base, |s| s.dpi = 0),
        with(&base, |s| s.dpi = 70_000),
        with(&base, |s| s.min_kb = 200),
        with(&base, |s| s.max_kb = 0),
    ] {
        let err = fit(photo(), &bad).unwrap_err();
        assert!(matches!(err, FitError::Failed(_)), "{err}");
        assert_eq!(err.code(), ErrorCode::SchemaFailed);
    }
}

#[test]
fn jpeg_padding_handles_large_and_tiny_amounts() {
    let jpeg = encode_jpeg(&Pixels::Rgb(RgbImage::new(8, 8)), 90, 72, Chroma::Full).unwrap();
    for extra in [1u64, 3, 4, 5, 65_537, 65_538, 65_540, 200_000] {
        let padded = pad_jpeg(&jpeg, extra).unwrap();
        let grown = (padded.len() - jpeg.len()) as u64;
        assert!(
            grown >= extra && grown <= extra.max(4) + 3,
            "{extra} -> {grown}"
        );
        let img = image::load_from_memory(&padded).unwrap();
        assert_eq!(img.width(), 8);
    }
}

#[test]
fn filenames_are_expanded_and_sanitised() {
    let job = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    let mut r = rule(
        DocumentKind::Signature,
        OutputFormat::Jpeg,
        (140, 60),
        200,
        (10, 20),
    );
    assert_eq!(
        output_filename(&r, job),
        "test-portal_signature_01234567-89ab-cdef-0123-456789abcdef.jpg"
    );
    r.spec.filename_pattern = "../{slug}/{kind} ✓.JPEG".to_owned();
    assert_eq!(output_filename(&r, job), "_test-portal_signature__.JPEG");
    r.spec.filename_pattern = "{unknown}-{slug}".to_owned();
    r.spec.slug = "{kind}".to_owned();
    assert_eq!(output_filename(&r, job), "_unknown_-_kind_.jpg");
    r.spec.filename_pattern = "x".repeat(500) + ".jpg";
    let long = output_filename(&r, job);
    assert_eq!(long.len(), 128);
    assert!(long.ends_with("x.jpg"));
    r.spec.filename_pattern = "...".to_owned();
    r.spec.format = OutputFormat::Pdf;
    assert_eq!(output_filename(&r, job), format!("{job}.pdf"));
    r.spec.filename_pattern = ".png".to_owned();
    r.spec.format = OutputFormat::Png;
    assert_eq!(output_filename(&r, job), "png.png");
}

#[test]
fn dpi_round_trips_through_ppm() {
    for dpi in [1u16, 72, 96, 100, 150, 200, 240, 300, 600, 1200, 65_535] {
        assert_eq!(ppm_to_dpi(dpi_to_ppm(dpi)), u64::from(dpi));
    }
}

// ---- subject-aware crop ----

/// A portrait on a plain wall: a skin-coloured face (ellipse) with dark hair on top, and dark
/// shoulders below it, centred at `cx`; the head's top at `head_top`.
fn portrait(w: u32, h: u32, cx: f64, head_top: f64) -> RgbImage {
    let face_r = (w.min(h) as f64) * 0.12;
    let face_cy = head_top + face_r * 1.3;
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (f64::from(x) - cx, f64::from(y) - face_cy);
        let in_face = (fx / face_r).powi(2) + (fy / (face_r * 1.3)).powi(2) <= 1.0;
        let in_hair =
            (fx / (face_r * 1.1)).powi(2) + ((fy + face_r * 0.4) / (face_r * 1.1)).powi(2) <= 1.0
                && fy < -face_r * 0.5;
        let shoulders_top = face_cy + face_r * 1.5;
        let in_body = f64::from(y) > shoulders_top
            && fx.abs() < face_r * 2.2 + (f64::from(y) - shoulders_top) * 0.5;
        if in_hair {
            Rgb([40, 30, 25])
        } else if in_face {
            Rgb([224, 172, 138])
        } else if in_body {
            Rgb([30, 40, 70])
        } else {
            Rgb([228, 230, 232])
        }
    })
}

#[test]
fn photo_crop_follows_a_subject_off_centre() {
    // Landscape frame, person at 3/4 of the width; the portal wants a portrait.
    let img = portrait(1200, 800, 900.0, 150.0);
    let (cw, ch) = (centre_crop(1200, 800, 200, 230).2, 800);
    let (x, y) = subject_crop(&img, cw, ch).unwrap();
    assert_eq!(y, 0);
    let face_r = 800.0 * 0.12;
    // The whole face is inside the window; a centre crop (x = 252..948) would cut it.
    assert!(
        f64::from(x) < 900.0 - face_r && f64::from(x + cw) > 900.0 + face_r,
        "x {x}"
    );
    assert!(
        f64::from(x) > 900.0 - f64::from(cw) / 2.0 - 60.0,
        "roughly centred on it: {x}"
    );
}

#[test]
fn photo_crop_keeps_headroom_above_the_head() {
    // A tall phone portrait whose head is near the top: a centre crop would cut it.
    let img = portrait(600, 1200, 300.0, 80.0);
    let (_, centre_y, cw, ch) = centre_crop(600, 1200, 200, 230);
    assert!(
        centre_y > 80,
        "the centre crop starts at {centre_y}, below the head's top"
    );
    let (x, y) = subject_crop(&img, cw, ch).unwrap();
    assert_eq!(x, 0);
    // Head top at 80: the window starts above it, with about 10 % of its height free.
    assert!(y < 80, "y {y}");
    let headroom = 80 - y;
    assert!(
        f64::from(headroom) >= 0.05 * f64::from(ch) && f64::from(headroom) <= 0.2 * f64::from(ch),
        "headroom {headroom} of {ch}"
    );
}

#[test]
fn featureless_photos_and_non_photos_stay_centred() {
    let flat = RgbImage::from_pixel(900, 600, Rgb([200, 200, 200]));
    assert_eq!(subject_crop(&flat, 400, 600), None);
    // Signatures are cropped around the centre whatever their content.
    let img = DynamicImage::ImageRgb8(portrait(1200, 800, 900.0, 150.0));
    let t = Target::from_rule(&rule(
        DocumentKind::Signature,
        OutputFormat::Jpeg,
        (200, 230),
        200,
        (0, 100),
    ))
    .unwrap();
    let sig = resize_to_target(&img, DocumentKind::Signature, &t, &mut Vec::new())
        .unwrap()
        .into_rgb();
    let photo = resize_to_target(&img, DocumentKind::Photo, &t, &mut Vec::new())
        .unwrap()
        .into_rgb();
    // The photo crop shows the whole face (skin tones); the centred one cuts it.
    let skin = |p: &RgbImage| {
        p.pixels()
            .filter(|px| px[0] > 180 && px[1] > 130 && px[1] < 200 && px[2] < 170)
            .count()
    };
    assert!(
        skin(&photo) > skin(&sig),
        "{} vs {}",
        skin(&photo),
        skin(&sig)
    );
}

#[test]
fn subject_crop_on_the_real_astronaut_keeps_her_face() {
    // Eileen Collins' head (hair included) spans about x 150–300 of skimage's 512 × 512
    // portrait, with a flag on the left and a shuttle model on the right: a 1:2 window must
    // keep the head whole.
    let bytes = std::fs::read(format!(
        "{}/tests/fixtures/photos/astronaut.jpg",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let img = image::load_from_memory(&bytes).unwrap().into_rgb8();
    let (x, _) = subject_crop(&img, 256, 512).unwrap();
    assert!(x <= 150 && x + 256 >= 300, "window {x}..{}", x + 256);
}

/// The `png` crate's encoder writes exactly what `image`'s `PngEncoder` wrote at the settings used
/// before (`CompressionType::Best`, adaptive filtering), with the pHYs chunk right after IHDR:
/// moving the chunk writing to the `png` crate left the files byte for byte as they were.
#[test]
fn png_bytes_are_images_encoding_with_phys_after_ihdr() {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::{ExtendedColorType, ImageEncoder};

    let rgb = image::imageops::crop_imm(&photo().to_rgb8(), 0, 0, 160, 120).to_image();
    let ours = encode_png(rgb.as_raw(), 160, 120, ::png::ColorType::Rgb, 300).unwrap();
    let mut theirs = Vec::new();
    PngEncoder::new_with_quality(&mut theirs, CompressionType::Best, FilterType::Adaptive)
        .write_image(rgb.as_raw(), 160, 120, ExtendedColorType::Rgb8)
        .unwrap();
    // Signature and IHDR: 33 bytes; pHYs: length, type, 9 bytes of data, CRC.
    assert_eq!(ours[..33], theirs[..33]);
    assert_eq!(&ours[33..41], b"\0\0\0\x09pHYs");
    let ppm = dpi_to_ppm(300).to_be_bytes();
    assert_eq!(
        &ours[41..50],
        [ppm, ppm]
            .concat()
            .iter()
            .chain(&[1])
            .copied()
            .collect::<Vec<_>>()
    );
    assert_eq!(ours[54..], theirs[33..]);
}
