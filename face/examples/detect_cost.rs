//! CPU time of one detection (process CPU, all threads) on a photo at a few sizes, median of 5.
//!
//! `cargo run -p rythmiq-face --example detect_cost [-- IMAGE]` (models from ./models).

use std::path::PathBuf;

use cpu_time::ProcessTime;
use rythmiq_face::{DetectOptions, Detector};

fn main() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with("--"))
        .map_or_else(
            || PathBuf::from("pipeline/tests/fixtures/photos/astronaut.jpg"),
            PathBuf::from,
        );
    let img = image::open(&path).map_err(|e| e.to_string())?.into_rgb8();
    // `--12mp`: the photo enlarged to 4000×3000, a phone photo's size.
    let img = if std::env::args().any(|a| a == "--12mp") {
        image::imageops::resize(&img, 4000, 3000, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    // One thread, as a worker slot runs it.
    let det = Detector::load(&PathBuf::from("models"))
        .map_err(|e| e.to_string())?
        .with_threads(1);
    for side in [160u32, 224, 256, 320, 416, 640, 960] {
        let opts = DetectOptions {
            max_side: side,
            ..DetectOptions::default()
        };
        let mut times = Vec::new();
        let mut found = 0;
        for _ in 0..6 {
            let t = ProcessTime::now();
            found = det
                .detect_with(&img, &opts)
                .map_err(|e| e.to_string())?
                .len();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        println!(
            "max side {side}: {:.4} CPU-s per detection ({found} faces)",
            times[3]
        );
    }
    Ok(())
}
