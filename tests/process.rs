//! `rythmiq process`: the worker's pipeline as a local command, over every seeded portal rule.

mod common;

use std::process::Command;

use anyhow::{Context, Result};
use common::{photo_jpeg, shared_tempdir, write_file};

#[path = "../ocr/tests/support/capture.rs"]
mod capture;
#[path = "../ocr/tests/support/render.rs"]
mod render;
use rythmiq_shared::domain::DocumentKind;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rythmiq");

fn process(input: &std::path::Path, portal: &str, out: &std::path::Path) -> Result<(bool, Value)> {
    let o = Command::new(BIN)
        .arg("process")
        .arg(input)
        .args(["--portal", portal, "--json", "--out"])
        .arg(out)
        .output()?;
    let v: Value = serde_json::from_slice(&o.stdout)?;
    Ok((o.status.success(), v))
}

/// The stage names of a `process --json` report, in order.
fn stage_names(v: &Value) -> Vec<&str> {
    v["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect()
}

#[test]
fn every_seeded_portal_gets_a_compliant_file() -> Result<()> {
    let dir = shared_tempdir()?;
    let photo = write_file(dir.path(), "photo.jpg", &photo_jpeg(1600, 2000, 5))?;
    let rules = rythmiq_shared::portals::builtin()?;
    assert!(rules.len() >= 9);
    for rule in rules {
        let out = dir.path().join(format!("{}.out", rule.slug));
        let (ok, v) = process(&photo, &rule.slug, &out)?;
        assert!(ok, "{}: {v}", rule.slug);
        assert_eq!(v["status"], "ok");
        assert_eq!(v["portal"], rule.slug.as_str());
        assert!(v["path"] == "fast" || v["path"] == "standard");
        let score = v["quality_score"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&score));
        let names = stage_names(&v);
        assert!(
            names.contains(&"decode") && names.contains(&"quality") && names.contains(&"schema"),
            "{names:?}"
        );
        // Rules with a `[face]` table frame the photo (a portrait) by its face.
        assert_eq!(
            names.contains(&"face") && names.contains(&"frame"),
            rule.face.is_some(),
            "{}: {names:?}",
            rule.slug
        );
        // Photo rules that want a plain white or light backdrop get it replaced around the
        // portrait (BACKGROUND), framed by the face or not.
        assert_eq!(
            names.contains(&"background"),
            rule.kind == DocumentKind::Photo
                && matches!(rule.background.as_str(), "white" | "light"),
            "{}: {names:?}",
            rule.slug
        );
        // OCR is never skipped: PRE-OCR runs (or, for a document on the fast path, the full
        // read that is its baseline), and the result says what it read.
        assert!(
            names.contains(&"pre_ocr")
                || (rule.kind == DocumentKind::Document && names.contains(&"ocr")),
            "{}: {names:?}",
            rule.slug
        );
        let conf = v["ocr"]["confidence"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&conf), "{}", v["ocr"]);
        assert!(v["ocr"]["lines"].is_u64() && v["ocr"]["chars"].is_u64());
        assert!(v["ocr"]["rolled_back"].is_boolean());
        for s in v["stages"].as_array().into_iter().flatten() {
            assert!(s["cpu_seconds"].as_f64().is_some() && s["wall_seconds"].as_f64().is_some());
        }
        let bytes = std::fs::read(&out)?;
        assert_eq!(v["output"]["bytes"].as_u64(), Some(bytes.len() as u64));
        let (min, max) = rule.byte_window();
        assert!(
            (min..=max).contains(&(bytes.len() as u64)),
            "{}: {} bytes",
            rule.slug,
            bytes.len()
        );
        assert_eq!(v["output"]["width"].as_i64(), Some(i64::from(rule.width)));
        assert_eq!(v["output"]["height"].as_i64(), Some(i64::from(rule.height)));
        assert_eq!(v["output"]["dpi"].as_i64(), Some(i64::from(rule.dpi)));
        if rule.format != rythmiq_shared::domain::OutputFormat::Pdf {
            let img = image::load_from_memory(&bytes)?;
            assert_eq!(
                (img.width() as i32, img.height() as i32),
                (rule.width, rule.height)
            );
        } else {
            assert!(bytes.starts_with(b"%PDF-"));
        }
    }
    Ok(())
}

#[test]
fn a_photo_without_a_face_fails_a_face_rule_clearly_and_passes_one_without() -> Result<()> {
    let dir = shared_tempdir()?;
    let coffee = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipeline/tests/fixtures/photos/coffee.jpg");
    let out = dir.path().join("coffee.jpg");
    let (ok, v) = process(&coffee, "passport-india-photo", &out)?;
    assert!(!ok, "{v}");
    assert_eq!(v["status"], "error", "{v}");
    assert_eq!(v["error_code"], "FACE_NOT_FOUND", "{v}");
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains("no face")),
        "{v}"
    );
    assert!(!out.exists(), "nothing written on failure");
    // IBPS asks nothing about the face: the same photo is fitted, neither framed nor cut out
    // (its one look for a person, for the light backdrop it wants, finds none).
    let (ok, v) = process(&coffee, "ibps-2026-photo", &out)?;
    assert!(ok, "{v}");
    let names = stage_names(&v);
    assert!(
        !names.contains(&"frame") && !names.contains(&"background"),
        "{v}"
    );
    Ok(())
}

#[test]
fn failures_are_json_with_a_code_and_a_non_zero_exit() -> Result<()> {
    let dir = shared_tempdir()?;
    let text = write_file(dir.path(), "notes.png", b"this is text, not a picture")?;
    let (ok, v) = process(&text, "neet-ug-2026-photo", &dir.path().join("x"))?;
    assert!(!ok);
    assert_eq!(v["status"], "error");
    assert!(
        v["error_code"] == "PAYLOAD_INVALID" || v["error_code"] == "DECODE_FAILED",
        "{v}"
    );
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(!dir.path().join("x").exists(), "nothing written on failure");

    let photo = write_file(dir.path(), "p.jpg", &photo_jpeg(300, 400, 1))?;
    let (ok, v) = process(&photo, "no-such-portal", &dir.path().join("y"))?;
    assert!(!ok);
    assert_eq!(v["status"], "error");

    let list = Command::new(BIN)
        .args(["process", "--list-portals"])
        .output()?;
    assert!(list.status.success());
    let listed = String::from_utf8(list.stdout)?;
    for slug in [
        "neet-ug-2026-photo",
        "ibps-2026-signature",
        "aadhaar-update-document",
    ] {
        assert!(listed.contains(slug), "{listed}");
    }
    Ok(())
}

#[test]
fn a_document_is_read_and_its_text_stored_next_to_the_output() -> Result<()> {
    let dir = shared_tempdir()?;
    let png = render::certificate_png(44.0, "");
    let input = write_file(dir.path(), "scan.png", &png)?;
    let out = dir.path().join("doc.pdf");
    let (ok, v) = process(&input, "aadhaar-update-document", &out)?;
    assert!(ok, "{v}");
    let names = stage_names(&v);
    assert!(names.contains(&"ocr"), "{names:?}");
    if v["path"] == "fast" {
        // Nothing can be undone on the fast path: the full read is the baseline, with no cheap
        // read before it (it would repeat part of it).
        assert!(!names.contains(&"pre_ocr"), "{names:?}");
        assert_eq!(v["ocr"]["baseline_confidence"], v["ocr"]["confidence"]);
    } else {
        // The standard path compares a sample of lines before and after ENHANCE.
        assert!(names.contains(&"pre_ocr"), "{names:?}");
    }
    assert!(v["ocr"]["lines"].as_u64().unwrap_or(0) >= 4, "{}", v["ocr"]);
    assert!(
        v["ocr"]["confidence"].as_f64().unwrap_or(0.0) > 0.8,
        "{}",
        v["ocr"]
    );

    let text: Value = serde_json::from_slice(&std::fs::read(dir.path().join("doc.pdf.ocr.json"))?)?;
    let read = text["text"].as_str().unwrap_or_default();
    for word in ["CERTIFICATE", "Priya Sharma", "ABX-2291-KL", "January 2024"] {
        assert!(read.contains(word), "{word} not in {read:?}");
    }
    Ok(())
}

#[test]
fn a_phone_capture_of_a_document_is_flattened_and_read_in_full() -> Result<()> {
    let dir = shared_tempdir()?;
    let cases = [
        ("capture", capture::Spec::phone(), 3),
        // A smaller frame: the flattened page's lines are ~33 px high, and squeezed for the
        // recogniser one of them lost its spaces ("NewDelhi-110085Category") and the line.
        (
            "capture-2250",
            capture::Spec {
                frame_w: 2250,
                frame_h: 3000,
                seed: 1,
                ..capture::Spec::phone()
            },
            5,
        ),
    ];
    for (name, spec, start) in cases {
        let lines = capture::document_lines(start);
        let shot = capture::capture(&capture::document_page(&lines), &spec);
        let input = write_file(dir.path(), &format!("{name}.jpg"), &shot.jpeg)?;
        let out = dir.path().join(format!("{name}.pdf"));
        let (ok, v) = process(&input, "aadhaar-update-document", &out)?;
        assert!(ok, "{name}: {v}");
        assert_eq!(v["capture"]["outcome"], "page", "{name}: {v}");
        assert!(stage_names(&v).contains(&"capture"), "{name}: {v}");
        let text: Value = serde_json::from_slice(&std::fs::read(
            dir.path().join(format!("{name}.pdf.ocr.json")),
        )?)?;
        let read = text["text"].as_str().unwrap_or_default();
        let (recall, missing) = capture::line_recall(&lines, read, 0.1);
        assert!(recall == 1.0, "{name}: missing {missing:?} in {read:?}");
        assert_eq!(
            text["unreadable"].as_array().map(Vec::len),
            Some(0),
            "{name}"
        );
    }
    Ok(())
}

/// Run outside the checkout with no models directory configured, `rythmiq process` finds the
/// models in the user's data directory; with none anywhere, its error names every place it
/// looked in.
#[test]
fn process_finds_the_models_from_any_working_directory() -> Result<()> {
    let models = std::env::var_os("RYTHMIQ_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
        .canonicalize()?;
    let elsewhere = shared_tempdir()?;
    let photo = write_file(elsewhere.path(), "photo.jpg", &photo_jpeg(600, 700, 3))?;
    let data = shared_tempdir()?;
    let run = |data_home: &std::path::Path| {
        Command::new(BIN)
            .current_dir(elsewhere.path())
            .env_remove("RYTHMIQ_MODELS_DIR")
            .env("XDG_DATA_HOME", data_home)
            .args([
                "process",
                "photo.jpg",
                "--portal",
                "neet-ug-2026-photo",
                "--out",
                "out.jpg",
            ])
            .output()
    };

    // Nowhere: the error lists ./models, the two places next to the binary and the data directory.
    let o = run(data.path())?;
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    let exe_dir = std::path::Path::new(BIN).parent().context("exe dir")?;
    for place in [
        "./models".to_owned(),
        exe_dir.join("models").display().to_string(),
        exe_dir
            .join("..")
            .join("share")
            .join("rythmiq")
            .join("models")
            .display()
            .to_string(),
        data.path()
            .join("rythmiq")
            .join("models")
            .display()
            .to_string(),
    ] {
        assert!(stderr.contains(&place), "{place} not in {stderr}");
    }
    assert!(!photo.with_file_name("out.jpg").exists());

    // In the user's data directory: found.
    std::fs::create_dir_all(data.path().join("rythmiq"))?;
    std::os::unix::fs::symlink(&models, data.path().join("rythmiq").join("models"))?;
    let o = run(data.path())?;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(photo.with_file_name("out.jpg").exists());
    Ok(())
}
