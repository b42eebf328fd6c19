//! CPU cost of the image pipeline per input and portal rule, for `load/image/bench.sh`.
//!
//! Runs `pipeline::process_image` (what `rythmiq process` and the worker run, without OCR) on every
//! IMAGE for every seeded portal rule (or those named with `--portal`): one warm-up call, then
//! `--reps` timed calls. The cost is the process's CPU time (all threads: the decode runs on a
//! thread of its own), the median over the timed calls; for document rules `capture_cpu_s` is
//! CAPTURE's part of it (its stage CPU, median). Prints one JSON object per line and
//! writes the last output to `--out`/`<image stem>__<slug>.<ext>`.
//!
//! Rules with a `[face]` table are framed by the face and get their plain backdrop, with the
//! models the worker runs (CenterFace and the selfie segmenter, on one thread as a worker slot
//! runs them; models from the usual directories, `scripts/fetch-models.sh`): `cpu_s` is that
//! path, and `fast_cpu_s` the same image and rule with the framing off (the subject crop), so
//! the face path's cost reads beside it.
//!
//! `cargo run --release -p rythmiq-pipeline --example fit_bench -- --out DIR [--reps N]
//! [--portal SLUG]... IMAGE...`; `--list-rules` prints the rules instead.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use cpu_time::ProcessTime;
use rythmiq_face::{Detector, Segmenter};
use rythmiq_pipeline::{self as pipeline, FaceModels, Processed, decode::DecodeLimits};
use serde_json::json;

struct Args {
    out: PathBuf,
    reps: usize,
    portals: Vec<String>,
    images: Vec<PathBuf>,
    list_rules: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        out: PathBuf::from("fit-bench-out"),
        reps: 5,
        portals: Vec::new(),
        images: Vec::new(),
        list_rules: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--out" => args.out = PathBuf::from(value("--out")?),
            "--reps" => {
                args.reps = value("--reps")?
                    .parse()
                    .map_err(|e| format!("--reps: {e}"))?;
            }
            "--portal" => args.portals.push(value("--portal")?),
            "--list-rules" => args.list_rules = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ => args.images.push(PathBuf::from(a)),
        }
    }
    if args.images.is_empty() && !args.list_rules {
        return Err("no images given".to_owned());
    }
    Ok(args)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One warm-up call (pages in the code and the allocator's arenas), then `reps` timed calls:
/// median CPU and wall seconds, and the last outcome.
/// The medians of `reps` timed calls of `f` after one warm-up (which pages in the code and the
/// allocator's arenas), and the last call's outcome.
struct Timed {
    cpu: f64,
    wall: f64,
    /// CAPTURE's stage CPU (document rules), when it ran.
    capture: Option<f64>,
    last: Option<Result<Processed, pipeline::Error>>,
}

fn timed(reps: usize, f: impl Fn() -> Result<Processed, pipeline::Error>) -> Timed {
    let _ = f();
    let (mut cpu, mut wall, mut capture) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..reps.max(1) {
        let (c, w) = (ProcessTime::now(), Instant::now());
        let outcome = f();
        cpu.push(c.elapsed().as_secs_f64());
        wall.push(w.elapsed().as_secs_f64());
        if let Ok(p) = &outcome {
            capture.extend(
                p.stages
                    .iter()
                    .filter(|s| s.name == "capture")
                    .map(|s| s.cpu_seconds),
            );
        }
        last = Some(outcome);
    }
    Timed {
        cpu: median(cpu),
        wall: median(wall),
        capture: (!capture.is_empty()).then(|| median(capture)),
        last,
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "image".to_owned(), |s| s.to_string_lossy().into_owned())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fit_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let rules = match rythmiq_shared::portals::builtin() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fit_bench: portal rules: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rules: Vec<_> = rules
        .into_iter()
        .filter(|r| args.portals.is_empty() || args.portals.contains(&r.slug))
        .collect();
    if args.list_rules {
        // The rules as the compliance checker needs them, one JSON object per line.
        for r in &rules {
            let kind = serde_json::to_value(r.kind).unwrap_or_default();
            println!(
                "{}",
                json!({
                    "slug": r.slug, "kind": kind, "width": r.width, "height": r.height,
                    "dpi": r.dpi, "format": r.format.extension(),
                    "min_kb": r.min_kb, "max_kb": r.max_kb, "face": r.face.is_some(),
                })
            );
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("fit_bench: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let limits = DecodeLimits::default();
    // Only needed when a rule frames by the face; then they must be there, or the figures would
    // silently be the subject crop's.
    let models = if rules.iter().any(|r| r.face.is_some()) {
        let loaded = rythmiq_face::find_models_dir().and_then(|dir| {
            let detector = Detector::load(&dir)?.with_threads(1);
            let segmenter = Segmenter::load(&dir)?;
            // One pool for both, as a worker slot's job runs them.
            let segmenter = match detector.pool() {
                Some(pool) => segmenter.with_pool(pool),
                None => segmenter,
            };
            Ok((detector, segmenter))
        });
        match loaded {
            Ok(m) => Some(m),
            Err(e) => {
                eprintln!("fit_bench: the face rules need the face models: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    for image in &args.images {
        let bytes = match std::fs::read(image) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("fit_bench: {}: {e}", image.display());
                return ExitCode::FAILURE;
            }
        };
        for rule in &rules {
            let framed =
                models
                    .as_ref()
                    .filter(|_| rule.face.is_some())
                    .map(|(detector, segmenter)| FaceModels {
                        detector,
                        segmenter,
                    });
            let run = |face: Option<FaceModels<'_>>| match face {
                Some(m) => pipeline::process_image_with_face(&bytes, rule, &limits, m),
                None => pipeline::process_image(&bytes, rule, &limits, None),
            };
            let Timed {
                cpu,
                wall,
                capture,
                last,
            } = timed(args.reps, || run(framed));
            let fast = framed.map(|_| timed(args.reps, || run(None)).cpu);
            let mut line = json!({
                "tool": "rythmiq",
                "image": image.file_name().map(|n| n.to_string_lossy().into_owned()),
                "rule": rule.slug,
                "cpu_s": cpu,
                "wall_s": wall,
            });
            if let Some(capture) = capture {
                line["capture_cpu_s"] = json!(capture);
            }
            if let Some(fast) = fast {
                line["fast_cpu_s"] = json!(fast);
            }
            match last {
                Some(Ok(p)) => {
                    let file = args.out.join(format!(
                        "{}__{}.{}",
                        stem(image),
                        rule.slug,
                        rule.format.extension()
                    ));
                    if let Err(e) = std::fs::write(&file, &p.bytes) {
                        eprintln!("fit_bench: {}: {e}", file.display());
                        return ExitCode::FAILURE;
                    }
                    line["status"] = json!("ok");
                    line["output"] = json!(file.display().to_string());
                    line["path"] = json!(p.path.as_str());
                    line["quality"] = json!(p.quality.score);
                    line["warnings"] = json!(p.warnings);
                    line["stages"] = p
                        .stages
                        .iter()
                        .map(|s| (s.name.to_owned(), json!(s.cpu_seconds)))
                        .collect::<serde_json::Map<_, _>>()
                        .into();
                }
                Some(Err(e)) => {
                    line["status"] = json!("error");
                    line["error_code"] = json!(e.code().as_str());
                    line["message"] = json!(e.to_string());
                }
                None => {}
            }
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}
