//! What framing by the face adds to a photo's CPU: each IMAGE (default: a 12 MP phone-sized
//! portrait made from the astronaut fixture, with grain, JPEG quality 90) through
//! `pipeline::process_image` with OCR, for a rule with its `[face]` table, for the same rule
//! allowing any background (so without BACKGROUND's segmentation and replacement) and for the
//! same rule without `[face]`; the process's CPU time (all threads), median of `--reps` calls
//! after a warm-up, and the face stages' own CPU (detection, framing, background).
//!
//! `cargo run --release -p rythmiq-pipeline --example face_cost -- [--portal SLUG] [--reps N]
//! [IMAGE...]` (models from ./models, `scripts/fetch-models.sh`).

use std::path::PathBuf;
use std::time::Duration;

use cpu_time::ProcessTime;
use image::imageops::{self, FilterType};
use rythmiq_pipeline::{self as pipeline, decode::DecodeLimits, ocr::OcrStage};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A 4000×3000 portrait: the fixture enlarged, the face on the left third, with sensor-like
/// grain so the JPEG costs what a phone's does to decode.
fn phone_portrait() -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos");
    let face = image::open(dir.join("astronaut.jpg")).map(|i| i.into_rgb8());
    let bg = image::open(dir.join("rocket.jpg")).map(|i| i.into_rgb8());
    let (Ok(face), Ok(bg)) = (face, bg) else {
        return Vec::new();
    };
    let mut canvas = imageops::resize(&bg, 4000, 3000, FilterType::Triangle);
    let face = imageops::resize(&face, 2600, 2600, FilterType::Triangle);
    imageops::replace(&mut canvas, &face, 300, 200);
    let mut state = 12345u32;
    for p in canvas.pixels_mut() {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let n = ((state >> 24) % 13) as i16 - 6;
        p.0 = p.0.map(|c| (i16::from(c) + n).clamp(0, 255) as u8);
    }
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    let _ = canvas.write_with_encoder(enc);
    out
}

fn main() -> Result<(), String> {
    let mut portal = "passport-india-photo".to_owned();
    let mut reps = 5usize;
    let mut images = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--portal" => portal = it.next().ok_or("--portal needs a value")?,
            "--reps" => {
                reps = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--reps needs a number")?;
            }
            _ => images.push(PathBuf::from(a)),
        }
    }
    let inputs: Vec<(String, Vec<u8>)> = if images.is_empty() {
        vec![(
            "12 MP portrait (astronaut on rocket)".into(),
            phone_portrait(),
        )]
    } else {
        images
            .iter()
            .map(|p| {
                Ok((
                    p.display().to_string(),
                    std::fs::read(p).map_err(|e| e.to_string())?,
                ))
            })
            .collect::<Result<_, String>>()?
    };
    let with_face = rythmiq_shared::portals::find(&portal)
        .map_err(|e| e.to_string())?
        .ok_or("unknown portal")?;
    let mut without = with_face.clone();
    without.spec.face = None;
    let mut any_background = with_face.clone();
    any_background.spec.background = "any".into();
    let stage = OcrStage::load(PathBuf::from("models"), 1, Duration::from_secs(60))
        .map_err(|e| e.to_string())?;
    for (name, bytes) in inputs {
        let cost = |rule| -> Result<(f64, Vec<(String, f64)>), String> {
            let mut cpu = Vec::new();
            let mut stages = Vec::new();
            for i in 0..=reps {
                let t = ProcessTime::now();
                let p =
                    pipeline::process_image(&bytes, rule, &DecodeLimits::default(), Some(&stage))
                        .map_err(|e| e.to_string())?;
                if i > 0 {
                    cpu.push(t.elapsed().as_secs_f64());
                }
                stages = p
                    .stages
                    .iter()
                    .map(|s| (s.name.to_owned(), s.cpu_seconds))
                    .collect();
            }
            Ok((median(cpu), stages))
        };
        let (a, sa) = cost(&with_face)?;
        let (c, sc) = cost(&any_background)?;
        let (b, sb) = cost(&without)?;
        let of = |stages: &[(String, f64)], names: &[&str]| -> f64 {
            stages
                .iter()
                .filter(|(n, _)| names.contains(&n.as_str()))
                .map(|(_, s)| s)
                .sum()
        };
        println!("{name} → {portal}");
        println!("  with [face]:    {a:.3} CPU-s  stages {sa:?}");
        println!("  any background: {c:.3} CPU-s  stages {sc:?}");
        println!("  without [face]: {b:.3} CPU-s  stages {sb:?}");
        println!(
            "  face stages (last call): detect {:.3}, frame {:.3}, background {:.3} CPU-s",
            of(&sa, &["face"]),
            of(&sa, &["frame"]),
            of(&sa, &["background"])
        );
        println!("  added by face framing: {:.3} CPU-s", c - b);
        println!("  added by background replacement: {:.3} CPU-s", a - c);
        println!("  added by both: {:.3} CPU-s", a - b);
    }
    Ok(())
}
