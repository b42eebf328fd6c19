//! Phone captures through CAPTURE and OCR, for `load/capture/bench.sh` and the README's picture.
//!
//! For each capture (rendered pages photographed on a desk: tilted, shadowed, warm light, blur,
//! JPEG q82; see `ocr/tests/support/capture.rs`) it reads the raw frame with our OCR (the path
//! without CAPTURE), runs CAPTURE, reads the flattened page, and prints one JSON line: line
//! recall and CER of each read, and the CPU seconds of CAPTURE and of each OCR pass. It writes
//! `<out>/<name>.jpg` (the capture) and `<out>/<name>.flat.png` (the flattened page) for
//! Tesseract to read (the script does that). With `--docs DIR` it writes the first capture's
//! before/after thumbnails there instead.
//!
//! `cargo run --release -p rythmiq-pipeline --example capture_eval -- --out DIR [--n N]
//! [--docs DIR]`

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../ocr/tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::Duration;

use cpu_time::ProcessTime;
use rythmiq_pipeline::capture;
use rythmiq_pipeline::ocr::{Budget, OcrStage};
use serde_json::json;
use support::{capture as shoot, render};

fn specs() -> Vec<(&'static str, shoot::Spec, usize)> {
    let base = shoot::Spec::phone();
    vec![
        ("tilt6-shadow", base, 0),
        (
            "tilt-5-deep-shadow",
            shoot::Spec {
                frame_w: 2250,
                frame_h: 3000,
                tilt: -0.05,
                rotate_deg: -4.0,
                shadow: 0.6,
                seed: 21,
                ..base
            },
            6,
        ),
        (
            "12mp-landscape",
            shoot::Spec {
                frame_w: 4000,
                frame_h: 3000,
                page_frac: 0.5,
                tilt: 0.04,
                rotate_deg: 2.0,
                seed: 5,
                ..base
            },
            13,
        ),
        (
            "tilt2-no-shadow",
            shoot::Spec {
                tilt: 0.02,
                rotate_deg: -1.0,
                shadow: 0.0,
                seed: 9,
                ..base
            },
            17,
        ),
    ]
}

fn thumb(img: &image::RgbImage, path: &std::path::Path) {
    let w = 360;
    let h = img.height() * w / img.width();
    let small = image::imageops::thumbnail(img, w, h);
    let mut file = std::fs::File::create(path).expect("creating the thumbnail");
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut file, 80)
        .encode_image(&small)
        .expect("writing the thumbnail");
}

fn main() {
    let mut out = PathBuf::from("capture-eval-out");
    let mut docs: Option<PathBuf> = None;
    let mut n = usize::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next().map(PathBuf::from).unwrap_or(out),
            "--docs" => docs = args.next().map(PathBuf::from),
            "--n" => n = args.next().and_then(|v| v.parse().ok()).unwrap_or(n),
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(&out).expect("creating the output directory");
    let rule = rythmiq_shared::portals::find("aadhaar-update-document")
        .expect("rules parse")
        .expect("the aadhaar-update-document rule");
    let ocr = OcrStage::load(support::models_dir(), 1, Duration::from_secs(600))
        .unwrap_or_else(|e| panic!("{e} (run scripts/fetch-models.sh)"));
    // Per capture: (raw recall, raw CPU), (flattened recall, CAPTURE CPU + flattened OCR CPU).
    let mut totals: Vec<[f64; 4]> = Vec::new();
    for (name, spec, start) in specs().into_iter().take(n) {
        let lines = shoot::document_lines(start);
        let shot = shoot::capture(&shoot::document_page(&lines), &spec);
        let frame = image::load_from_memory(&shot.jpeg).unwrap().into_rgb8();
        std::fs::write(out.join(format!("{name}.jpg")), &shot.jpeg).unwrap();
        std::fs::write(out.join(format!("{name}.txt")), lines.join("\n")).unwrap();
        let cpu = ProcessTime::now();
        let mut warnings = Vec::new();
        let (flat, report) = capture::capture(frame.clone(), &rule, &mut warnings);
        let capture_cpu = cpu.elapsed().as_secs_f64();
        flat.save(out.join(format!("{name}.flat.png"))).unwrap();
        if let Some(dir) = &docs {
            std::fs::create_dir_all(dir).unwrap();
            thumb(&frame, &dir.join("capture-before.jpg"));
            thumb(&flat, &dir.join("capture-after.jpg"));
            println!(
                "wrote {0}/capture-before.jpg and {0}/capture-after.jpg",
                dir.display()
            );
            return;
        }
        let read = |img: &image::RgbImage| {
            let cpu = ProcessTime::now();
            let page = ocr
                .engine
                .install(|| ocr.document(img, &Budget::new(Duration::from_secs(600))))
                .unwrap();
            let (recall, _) = shoot::line_recall(&lines, &page.text, 0.1);
            json!({
                "line_recall": recall,
                "cer": render::cer(&lines.join("\n"), &page.text),
                "unreadable": page.unreadable.len(),
                "cpu_seconds": cpu.elapsed().as_secs_f64(),
            })
        };
        let raw = read(&frame);
        let flattened = read(&flat);
        let num = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        totals.push([
            num(&raw, "line_recall"),
            num(&raw, "cpu_seconds"),
            num(&flattened, "line_recall"),
            capture_cpu + num(&flattened, "cpu_seconds"),
        ]);
        println!(
            "{}",
            json!({
                "capture": name,
                "frame": [spec.frame_w, spec.frame_h],
                "outcome": report.outcome,
                "warnings": warnings,
                "capture_cpu_seconds": capture_cpu,
                "ocr_raw_frame": raw,
                "ocr_flattened": flattened,
            })
        );
    }
    if !totals.is_empty() {
        let col = |k: usize| totals.iter().map(|t| t[k]).collect::<Vec<_>>();
        let mean = |v: Vec<f64>| v.iter().sum::<f64>() / v.len() as f64;
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        // One summary line, beside the JSON lines: the current path (OCR of the raw frame)
        // against CAPTURE + OCR of the flattened page, per page.
        println!(
            "{}",
            json!({
                "summary": totals.len(),
                "raw_frame": {"mean_line_recall": mean(col(0)), "median_cpu_seconds": median(col(1))},
                "capture_then_ocr": {"mean_line_recall": mean(col(2)), "median_cpu_seconds": median(col(3))},
            })
        );
    }
}
