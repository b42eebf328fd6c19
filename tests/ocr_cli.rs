//! `rythmiq ocr`: the engine on one image through the binary, with the real models.

mod common;

#[path = "../ocr/tests/support/render.rs"]
#[allow(unreachable_pub)]
mod render;

use std::process::Command;

use anyhow::Result;
use common::shared_tempdir;

const BIN: &str = env!("CARGO_BIN_EXE_rythmiq");

fn models_dir() -> std::path::PathBuf {
    std::env::var_os("RYTHMIQ_MODELS_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
        Into::into,
    )
}

#[test]
fn reads_a_rendered_line_and_prints_the_documented_json() -> Result<()> {
    let dir = shared_tempdir()?;
    let font = render::font("DejaVuSans.ttf");
    let lines = vec!["Roll No. 4521873 Priya Sharma".to_owned()];
    let page = render::render_lines(&font, 40.0, &lines, 900, 200);
    let path = dir.path().join("line.png");
    page.save(&path)?;

    let out = Command::new(BIN)
        .arg("ocr")
        .arg(&path)
        .arg("--json")
        .arg("--models-dir")
        .arg(models_dir())
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let text = v["text"].as_str().unwrap_or_default();
    assert!(text.contains("4521873") && text.contains("Priya"), "{v}");
    assert!(v["confidence"].as_f64().is_some_and(|c| c > 0.8), "{v}");
    assert_eq!(v["rotation"], 0);
    let line = &v["lines"][0];
    assert!(line["text"].is_string() && line["confidence"].is_number());
    assert_eq!(line["box"].as_array().map(Vec::len), Some(4));
    Ok(())
}

#[test]
fn missing_models_fail_at_start_up_with_a_clear_message() -> Result<()> {
    let dir = shared_tempdir()?;
    let img = dir.path().join("blank.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255])).save(&img)?;
    let out = Command::new(BIN)
        .arg("ocr")
        .arg(&img)
        .arg("--models-dir")
        .arg(dir.path().join("nowhere"))
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fetch-models"), "{err}");
    Ok(())
}
