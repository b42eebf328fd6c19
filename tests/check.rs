//! `rythmiq check`: a file held against a rule as it is. Our own outputs pass for every rule,
//! the test corpus's raw photos fail with each failing line named, and the exit code says which.

mod common;

#[path = "../ocr/tests/support/render.rs"]
mod render;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use common::{shared_tempdir, write_file};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rythmiq");

/// `rythmiq check FILE --portal SLUG --json`: (exit code, report).
fn check(file: &Path, portal: &str) -> Result<(i32, Value)> {
    let o = Command::new(BIN)
        .arg("check")
        .arg(file)
        .args(["--portal", portal, "--json"])
        .output()?;
    let v: Value = serde_json::from_slice(&o.stdout)
        .with_context(|| String::from_utf8_lossy(&o.stderr).into_owned())?;
    Ok((o.status.code().unwrap_or(-1), v))
}

fn failed(v: &Value) -> Vec<&str> {
    v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["passed"] == false)
        .filter_map(|l| l["rule"].as_str())
        .collect()
}

/// A head-and-shoulders figure on a plain white backdrop, phone-sized, with grain.
fn portrait_on_white() -> Vec<u8> {
    let (w, h) = (1200u32, 1600u32);
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (f64::from(x) / f64::from(w), f64::from(y) / f64::from(h));
        let head = ((fx - 0.5) / 0.2).powi(2) + ((fy - 0.4) / 0.26).powi(2) < 1.0;
        let body = fy > 0.7 && (fx - 0.5).abs() < 0.4;
        let n =
            (x.wrapping_mul(0x9E37_79B9) ^ y.wrapping_mul(0x85EB_CA6B)).wrapping_mul(0xC2B2_AE35);
        let g = ((n >> 24) % 11) as u8;
        if head {
            image::Rgb([196 + g, 150 + g, 120 + g])
        } else if body {
            image::Rgb([40 + g, 50 + g, 90 + g])
        } else {
            image::Rgb([240 + g, 240 + g, 240 + g])
        }
    });
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    img.write_with_encoder(enc).unwrap_or_default();
    out
}

#[test]
fn our_output_for_every_rule_passes_its_check() -> Result<()> {
    let dir = shared_tempdir()?;
    let paper = write_file(dir.path(), "portrait.jpg", &portrait_on_white())?;
    // Photo rules look for a face: a real one (scikit-image's astronaut, public domain).
    let face =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline/tests/fixtures/photos/astronaut.jpg");
    for rule in rythmiq_shared::portals::builtin()? {
        let is_photo = rule.kind == rythmiq_shared::domain::DocumentKind::Photo;
        let photo = if is_photo { &face } else { &paper };
        let out = dir
            .path()
            .join(format!("{}.{}", rule.slug, rule.format.extension()));
        let made = Command::new(BIN)
            .arg("process")
            .arg(photo)
            .args(["--portal", &rule.slug, "--json", "--out"])
            .arg(&out)
            .output()?;
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stdout)
        );
        let (code, v) = check(&out, &rule.slug)?;
        if rule.text_check == rythmiq_shared::domain::TextCheck::English {
            // A portrait is no declaration: the one line that must fail is the text OCR reads
            // (the declaration test below writes one).
            assert_eq!((code, failed(&v)), (1, vec!["text"]), "{v:#}");
        } else {
            assert_eq!((code, v["compliant"].as_bool()), (0, Some(true)), "{v:#}");
        }
        assert_eq!(v["portal"], rule.slug.as_str());
        // Format, pixels, DPI, size, colour and orientation are always judged, never skipped.
        let mut judged = vec!["format", "pixels", "dpi", "size", "colour", "orientation"];
        if is_photo {
            judged.push("face");
        }
        if rule.face.is_some() {
            // Our framing meets the rule's bands, as the check measures them.
            judged.extend(["face_height", "face_centre"]);
        }
        for line in judged {
            let l = v["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["rule"] == line)
                .with_context(|| format!("{}: no {line} line", rule.slug))?;
            assert_eq!(l["passed"], true, "{l}");
        }
    }
    Ok(())
}

#[test]
fn raw_photos_fail_with_each_line_named_and_exit_1() -> Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline/tests/fixtures/photos");
    // scikit-image's astronaut: 512 × 512, no DPI, before a flag and a dark wall.
    let (code, v) = check(&fixtures.join("astronaut.jpg"), "neet-ug-2026-photo")?;
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["compliant"], false);
    // Her head fills about a fifth of the frame and sits left of centre.
    assert_eq!(
        failed(&v),
        [
            "pixels",
            "dpi",
            "orientation",
            "background",
            "face_height",
            "face_centre"
        ]
    );
    let dpi = &v["checks"][2];
    assert_eq!(dpi["rule"], "dpi");
    assert_eq!(dpi["found"], "none written");
    // The same photo for the IBPS thumb rule: a square 512 × 512 at 65 KB, over 20–50 KB.
    let (code, v) = check(&fixtures.join("astronaut.jpg"), "ibps-2026-thumb")?;
    assert_eq!(code, 1);
    assert_eq!(failed(&v), ["pixels", "dpi", "size", "background"], "{v:#}");
    let size = v["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["rule"] == "size")
        .context("no size line")?;
    assert_eq!(
        size["message"],
        "65 KB; IBPS CRP 2026 allows 20–50 KB (at most 50000 bytes)"
    );
    Ok(())
}

#[test]
fn unreadable_files_and_unknown_portals_exit_2() -> Result<()> {
    let dir = shared_tempdir()?;
    let text = write_file(dir.path(), "photo.jpg", b"this is text, not a picture")?;
    let (code, v) = check(&text, "neet-ug-2026-photo")?;
    assert_eq!(code, 2, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be read")),
        "{v}"
    );
    let photo = write_file(dir.path(), "p.jpg", &portrait_on_white())?;
    let (code, v) = check(&photo, "no-such-portal")?;
    assert_eq!(code, 2, "{v}");
    let (code, _) = check(&dir.path().join("missing.jpg"), "neet-ug-2026-photo")?;
    assert_eq!(code, 2);
    Ok(())
}

#[test]
fn the_human_report_and_the_portal_list_explain_themselves() -> Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline/tests/fixtures/photos");
    let o = Command::new(BIN)
        .arg("check")
        .arg(fixtures.join("coffee.jpg"))
        .args(["--portal", "neet-ug-2026-photo"])
        .output()?;
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8(o.stdout)?;
    assert!(text.contains("will likely refuse"), "{text}");
    assert!(
        text.contains(
            "FAIL pixels       the image is 600 × 400 pixels; this rule needs exactly 200 × 230"
        ),
        "{text}"
    );
    assert!(
        text.contains("FAIL face         no face was found; the photo must show your face"),
        "{text}"
    );

    let list = Command::new(BIN)
        .args(["check", "--list-portals"])
        .output()?;
    assert!(list.status.success());
    let listed = String::from_utf8(list.stdout)?;
    for needle in [
        "neet-ug-2026-photo-postcard",
        "ibps-2026-thumb",
        "ibps-2026-declaration",
        "source: https://www.pw.live/news/neet-ug-2026-registration-documents-required-size-format-nta (checked 2026-12-06)",
        "the portal's: format, min_kb, background; ours: width, height, dpi, max_kb",
    ] {
        assert!(listed.contains(needle), "{needle:?} not in\n{listed}");
    }
    Ok(())
}

/// Dark text on white paper, as a scanned sheet: `lines` in DejaVu Sans at `px`, as a JPEG.
fn written(lines: &[&str], px: f32, width: u32, height: u32) -> Vec<u8> {
    let lines: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let page = render::render_lines(&render::font("DejaVuSans.ttf"), px, &lines, width, height);
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 92);
    page.write_with_encoder(enc).unwrap_or_default();
    out
}

fn line<'a>(v: &'a Value, rule: &str) -> &'a Value {
    v["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["rule"] == rule))
        .unwrap_or(&Value::Null)
}

#[test]
fn ocr_reads_the_declaration_and_flags_a_signature_in_capitals() -> Result<()> {
    let dir = shared_tempdir()?;
    let fit = |name: &str, bytes: Vec<u8>, portal: &str| -> Result<std::path::PathBuf> {
        let input = write_file(dir.path(), name, &bytes)?;
        let out = dir.path().join(format!("out-{name}"));
        let made = Command::new(BIN)
            .arg("process")
            .arg(&input)
            .args(["--portal", portal, "--json", "--out"])
            .arg(&out)
            .output()?;
        anyhow::ensure!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stdout)
        );
        Ok(out)
    };
    let declaration = written(
        &[
            "I, Priya Sharma, hereby declare that all",
            "the information submitted by me in the",
            "application form is correct, true and valid.",
        ],
        44.0,
        1600,
        800,
    );
    let out = fit("declaration.jpg", declaration, "ibps-2026-declaration")?;
    let (code, v) = check(&out, "ibps-2026-declaration")?;
    assert_eq!(line(&v, "text")["passed"], true, "{v:#}");
    assert_eq!(code, 0, "{v:#}");
    // A blank sheet has no declaration on it.
    let blank = written(&[], 44.0, 1600, 800);
    let out = fit("blank.jpg", blank, "ibps-2026-declaration")?;
    let (code, v) = check(&out, "ibps-2026-declaration")?;
    assert_eq!(
        (code, &line(&v, "text")["passed"]),
        (1, &Value::Bool(false)),
        "{v:#}"
    );

    let capitals = fit(
        "caps.jpg",
        written(&["PRIYA SHARMA"], 90.0, 1400, 600),
        "ibps-2026-signature",
    )?;
    let (code, v) = check(&capitals, "ibps-2026-signature")?;
    let caps = line(&v, "capitals");
    assert_eq!((code, &caps["passed"]), (1, &Value::Bool(false)), "{v:#}");
    assert!(
        caps["message"]
            .as_str()
            .is_some_and(|m| m.contains("capital letters")),
        "{caps}"
    );
    let usual = fit(
        "usual.jpg",
        written(&["Priya sharma"], 90.0, 1400, 600),
        "ibps-2026-signature",
    )?;
    let (_, v) = check(&usual, "ibps-2026-signature")?;
    assert_eq!(line(&v, "capitals")["passed"], true, "{v:#}");
    Ok(())
}
