//! Phone captures read whole: a page photographed on a desk (tilted, shadowed, blurred, JPEG)
//! must read every line from the raw frame, as it does cropped, at several tilts and scales.
//!
//! The models come from `scripts/fetch-models.sh`; fonts from Debian `fonts-dejavu-core`.

mod support;

use std::sync::OnceLock;

use rythmiq_ocr::{EngineConfig, OcrEngine, OcrOptions};
use support::{capture, models_dir, render};

fn engine() -> &'static OcrEngine {
    static ENGINE: OnceLock<OcrEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let cfg = EngineConfig {
            models_dir: models_dir(),
            threads: 2,
        };
        OcrEngine::load(&cfg).unwrap_or_else(|e| panic!("{e} (run scripts/fetch-models.sh first)"))
    })
}

fn read_capture(spec: &capture::Spec, start: usize) -> (Vec<String>, rythmiq_ocr::PageText) {
    let lines = capture::document_lines(start);
    let shot = capture::capture(&capture::document_page(&lines), spec);
    let frame = image::load_from_memory(&shot.jpeg)
        .unwrap_or_else(|e| panic!("decoding the capture: {e}"))
        .into_rgb8();
    let page = engine()
        .recognize(&frame, &OcrOptions::default())
        .unwrap_or_else(|e| panic!("recognize: {e}"));
    (lines, page)
}

fn assert_reads_every_line(name: &str, spec: capture::Spec, start: usize) {
    let (lines, page) = read_capture(&spec, start);
    let (recall, missing) = capture::line_recall(&lines, &page.text, 0.1);
    let cer = render::cer(&lines.join("\n"), &page.text);
    assert!(
        recall == 1.0 && cer < 0.05,
        "{name}: line recall {recall:.2}, CER {cer:.3}, missing {missing:?}\nread:\n{}",
        page.text
    );
}

#[test]
fn a_tilted_shadowed_phone_capture_reads_every_line() {
    assert_reads_every_line("3000×4000, tilt 6 %, 3°", capture::Spec::phone(), 0);
}

#[test]
fn captures_at_other_tilts_and_scales_read_every_line() {
    let base = capture::Spec::phone();
    let cases = [
        (
            "tilt -4 %, -2°, page 60 %, no shadow",
            capture::Spec {
                tilt: -0.04,
                rotate_deg: -2.0,
                page_frac: 0.6,
                shadow: 0.0,
                seed: 3,
                ..base
            },
            5,
        ),
        (
            "2250×3000, tilt 2 %, deep shadow",
            capture::Spec {
                frame_w: 2250,
                frame_h: 3000,
                tilt: 0.02,
                rotate_deg: 1.0,
                shadow: 0.6,
                seed: 11,
                ..base
            },
            9,
        ),
    ];
    for (name, spec, start) in cases {
        assert_reads_every_line(name, spec, start);
    }
}

#[test]
fn a_12_megapixel_landscape_capture_reads_every_line() {
    // 4000 × 3000 with the page upright in it: the page is ~56 % of the width.
    let spec = capture::Spec {
        frame_w: 4000,
        frame_h: 3000,
        page_frac: 0.5,
        tilt: 0.05,
        rotate_deg: -2.0,
        seed: 5,
        ..capture::Spec::phone()
    };
    assert_reads_every_line("4000×3000", spec, 13);
}

#[test]
fn raw_frames_under_a_deep_shadow_read_every_line() {
    // A 60 % shadow over one corner leaves that corner's paper at ~40 % of the rest: the raw
    // frame (no CAPTURE before the OCR) must still give up every line of it.
    let base = capture::Spec {
        shadow: 0.6,
        ..capture::Spec::phone()
    };
    let cases = [
        (
            "2250×3000, tilt -5 %, -4°",
            capture::Spec {
                frame_w: 2250,
                frame_h: 3000,
                tilt: -0.05,
                rotate_deg: -4.0,
                seed: 21,
                ..base
            },
            6,
        ),
        (
            "3000×4000, tilt 6 %, 3°",
            capture::Spec { seed: 2, ..base },
            3,
        ),
        (
            "4000×3000, page 50 %, tilt 3 %, 2°",
            capture::Spec {
                frame_w: 4000,
                frame_h: 3000,
                page_frac: 0.5,
                tilt: 0.03,
                rotate_deg: 2.0,
                seed: 8,
                ..base
            },
            10,
        ),
    ];
    for (name, spec, start) in cases {
        assert_reads_every_line(name, spec, start);
    }
}

#[test]
fn lines_below_the_confidence_floor_are_reported_not_dropped() {
    let lines = capture::document_lines(2);
    let page = capture::document_page(&lines[..4]);
    let strict = OcrOptions {
        // No reading is this sure: every detected line must come back as unreadable.
        min_line_confidence: 1.01,
        ..OcrOptions::default()
    };
    let normal = engine()
        .recognize(&page, &OcrOptions::default())
        .unwrap_or_else(|e| panic!("recognize: {e}"));
    let out = engine()
        .recognize(&page, &strict)
        .unwrap_or_else(|e| panic!("recognize: {e}"));
    assert!(out.text.is_empty() && out.lines.is_empty());
    assert_eq!(
        out.unreadable.len(),
        normal.lines.len() + normal.unreadable.len()
    );
    assert!(out.unreadable.len() >= 4, "{}", out.unreadable.len());
    assert!(
        out.unreadable
            .iter()
            .all(|u| u.confidence > 0.5 && u.confidence <= 1.0)
    );
    let json = rythmiq_ocr::to_json(&out);
    assert_eq!(
        json["unreadable"].as_array().map(Vec::len),
        Some(out.unreadable.len())
    );
}
