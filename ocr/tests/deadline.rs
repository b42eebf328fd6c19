//! `OcrOptions::deadline`: a pass stops at the first model run that would start after it.
//!
//! Real models (`scripts/fetch-models.sh`), rendered pages; the times compared are measured in
//! the same test, so the checks hold on a slow or busy machine.

mod support;

use std::time::{Duration, Instant};

use rythmiq_ocr::{EngineConfig, OcrEngine, OcrError, OcrOptions};
use support::{models_dir, render};

fn engine() -> OcrEngine {
    let cfg = EngineConfig {
        models_dir: models_dir(),
        threads: 2,
    };
    OcrEngine::load(&cfg).unwrap_or_else(|e| panic!("{e} (run scripts/fetch-models.sh first)"))
}

#[test]
fn a_passed_deadline_is_reported() {
    let engine = engine();
    let page = render::page(&render::font("DejaVuSans.ttf"), 26.0, 1200, 700, 0);
    let started = Instant::now();
    let result = engine.recognize(&page.image, &OcrOptions::default().with_deadline(started));
    assert!(
        matches!(result, Err(OcrError::DeadlineExceeded)),
        "{result:?}"
    );
}

#[test]
fn a_deadline_mid_page_stops_the_pass_within_a_run() {
    let engine = engine();
    // ~45 lines: each model run is a small part of the whole pass.
    let page = render::page(&render::font("DejaVuSerif.ttf"), 26.0, 1600, 1500, 3);

    let started = Instant::now();
    let far = started + Duration::from_secs(3600);
    let full = engine
        .recognize(&page.image, &OcrOptions::default().with_deadline(far))
        .unwrap_or_else(|e| panic!("recognize: {e}"));
    let whole_pass = started.elapsed();
    // A deadline that does not pass changes nothing.
    let plain = engine
        .recognize(&page.image, &OcrOptions::default())
        .unwrap_or_else(|e| panic!("recognize: {e}"));
    assert_eq!(full.text, plain.text);
    assert!(full.lines.len() >= 30, "{} lines", full.lines.len());

    let started = Instant::now();
    let result = engine.recognize(
        &page.image,
        &OcrOptions::default().with_deadline(started + whole_pass / 10),
    );
    let stopped_after = started.elapsed();
    assert!(
        matches!(result, Err(OcrError::DeadlineExceeded)),
        "{result:?}"
    );
    assert!(
        stopped_after < whole_pass / 2,
        "stopped after {stopped_after:?}; the whole pass took {whole_pass:?}"
    );
}
