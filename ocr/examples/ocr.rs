//! `cargo run --release --example ocr -- IMAGE [--json]`: reads one image
//! and prints its text in reading order, or with `--json` the object
//! `{"text", "confidence", "rotation", "lines": [{"text", "confidence", "box"}]}`.
//! Models: `$RYTHMIQ_MODELS_DIR` or `./models` (scripts/fetch-models.sh).

use std::process::ExitCode;

use rythmiq_ocr::{EngineConfig, OcrEngine, OcrOptions, to_json};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let Some(path) = args.iter().find(|a| !a.starts_with("--")) else {
        eprintln!("usage: ocr IMAGE [--json]");
        return ExitCode::from(2);
    };
    let img = match image::open(path) {
        Ok(i) => i.to_rgb8(),
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // RYTHMIQ_MODELS_DIR as the binary honours it (load/ocr/bench.sh sets it).
    let config = EngineConfig {
        models_dir: std::env::var_os("RYTHMIQ_MODELS_DIR")
            .map_or_else(rythmiq_ocr::default_models_dir, std::path::PathBuf::from),
        ..EngineConfig::default()
    };
    let engine = match OcrEngine::load(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match engine.recognize(&img, &OcrOptions::default()) {
        Ok(page) if json => println!("{}", to_json(&page)),
        Ok(page) => println!("{}", page.text),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
