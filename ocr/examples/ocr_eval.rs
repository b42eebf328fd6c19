//! Accuracy and speed benchmark: renders an evaluation set of
//! 2000-px pages with known text (several fonts and sizes; clean, blurred,
//! noisy, dark, skewed, rotated 180° and 90°), reads every page with this
//! engine and with Tesseract 5 in the same run, and prints the character
//! error rate and CPU seconds per page for both. Real scans with a reference
//! transcription are added with `--scan IMAGE=REFERENCE.txt` (repeatable) and
//! reported in the same table, with means for rendered pages, real scans and
//! all pages.
//!
//! With `--f32-peer`, where the matrix products run on a bf16 kernel (AMX or AVX512-BF16,
//! `rythmiq_ocr::matmul_kernel`), every page is read a second time right after, on the f32
//! kernels, and both are reported side by side: the same models (loaded a second time, so
//! that their weights are packed for the f32 kernels), pages and run.
//!
//! `cargo run --release -p rythmiq-ocr --example ocr_eval -- [--no-tesseract] [--f32-peer] [--keep DIR] [--threads N] [--scan IMAGE=REF]...`
//! (normally through `load/ocr/bench.sh`). Needs the models
//! (`scripts/fetch-models.sh`), `fonts-dejavu-core` and `tesseract-ocr`.

#[path = "../tests/support/render.rs"]
mod render;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::RgbImage;
use image::imageops::{blur, rotate90, rotate180};
use rythmiq_ocr::{EngineConfig, OcrEngine, OcrOptions};

/// CPU seconds (user + system) of this process (`self`) or of its waited-for
/// children (`children`), from /proc/self/stat.
fn cpu_seconds(children: bool) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14..=17, i.e. indices 11..=14 here.
    let ticks = if children {
        f.get(13).copied().unwrap_or(0.0) + f.get(14).copied().unwrap_or(0.0)
    } else {
        f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)
    };
    ticks / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TCK: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

struct Case {
    name: String,
    image: RgbImage,
    text: String,
    /// A real scan (read from a file) rather than a rendered page.
    scan: bool,
}

/// The evaluation set: 2000-px-tall portrait pages (A4 at ~240 dpi).
fn build_set() -> Vec<Case> {
    let (w, h) = (1414, 2000);
    let mut cases = Vec::new();
    let mut add =
        |name: &str, font: &str, px: f32, start: usize, f: &dyn Fn(&RgbImage) -> RgbImage| {
            let p = render::page(&render::font(font), px, w, h, start);
            cases.push(Case {
                name: name.to_string(),
                image: f(&p.image),
                text: p.text,
                scan: false,
            });
        };
    let id = |i: &RgbImage| i.clone();
    add("serif-36-clean", "DejaVuSerif.ttf", 36.0, 0, &id);
    add("sans-28-clean", "DejaVuSans.ttf", 28.0, 3, &id);
    add("mono-40-clean", "DejaVuSansMono.ttf", 40.0, 6, &id);
    add(
        "condensed-44-clean",
        "DejaVuSerifCondensed.ttf",
        44.0,
        9,
        &id,
    );
    add("sans-32-blurred", "DejaVuSans.ttf", 32.0, 12, &|i| {
        blur(i, 1.5)
    });
    add("serif-32-noisy", "DejaVuSerif.ttf", 32.0, 15, &|i| {
        render::noise(i, 70.0, 11)
    });
    add("sans-36-dark", "DejaVuSans.ttf", 36.0, 18, &|i| {
        render::dark(i, 25, 110)
    });
    add("serif-36-skew+3", "DejaVuSerif.ttf", 36.0, 2, &|i| {
        render::skew(i, 3.0)
    });
    add("sans-32-skew-2", "DejaVuSans.ttf", 32.0, 5, &|i| {
        render::skew(i, -2.0)
    });
    add("serif-36-rot180", "DejaVuSerif.ttf", 36.0, 8, &rotate180);
    add("sans-36-rot90", "DejaVuSans.ttf", 36.0, 11, &rotate90);
    cases
}

/// A real scan from `IMAGE=REFERENCE.txt`, named after the image file.
fn load_scan(spec: &str) -> Result<Case, String> {
    let (img, reference) = spec
        .split_once('=')
        .ok_or_else(|| format!("--scan {spec}: expected IMAGE=REFERENCE.txt"))?;
    let image = image::open(img)
        .map_err(|e| format!("{img}: {e}"))?
        .to_rgb8();
    let text = std::fs::read_to_string(reference).map_err(|e| format!("{reference}: {e}"))?;
    let stem = Path::new(img)
        .file_stem()
        .map_or_else(|| img.to_string(), |s| s.to_string_lossy().into_owned());
    Ok(Case {
        name: format!("scan:{stem}"),
        image,
        text,
        scan: true,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        0.0
    } else if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

/// Mean CER, median CPU-s and count of the pages `keep` selects.
fn stats(v: &[(bool, f64, f64)], keep: impl Fn(bool) -> bool) -> (f64, f64, usize) {
    let sel: Vec<&(bool, f64, f64)> = v.iter().filter(|r| keep(r.0)).collect();
    let cer = sel.iter().map(|r| r.1).sum::<f64>() / sel.len().max(1) as f64;
    let cpu: Vec<f64> = sel.iter().map(|r| r.2).collect();
    (cer, median(&cpu), sel.len())
}

/// Prints the rendered / real-scan / overall means of one engine.
fn summary(engine: &str, note: &str, v: &[(bool, f64, f64)]) {
    for (label, keep) in [
        ("rendered", &(|s: bool| !s) as &dyn Fn(bool) -> bool),
        ("scans", &|s: bool| s),
        ("all", &|_| true),
    ] {
        let (cer, cpu, n) = stats(v, keep);
        if n > 0 {
            println!(
                "{engine} {label:<8}: mean CER {cer:.4}, median CPU-s/page {cpu:.2} ({n} pages, {note})"
            );
        }
    }
}

fn tesseract(png: &Path) -> Option<(String, f64)> {
    let before = cpu_seconds(true);
    // --psm 1: automatic page segmentation with orientation detection, so
    // Tesseract too gets the chance to turn rotated pages.
    let out = Command::new("tesseract")
        .arg(png)
        .arg("stdout")
        .args(["--psm", "1", "-l", "eng"])
        .output()
        .ok()?;
    let cpu = cpu_seconds(true) - before;
    Some((String::from_utf8_lossy(&out.stdout).into_owned(), cpu))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let use_tess = !args.iter().any(|a| a == "--no-tesseract");
    let f32_peer = args.iter().any(|a| a == "--f32-peer");
    if f32_peer && !rten_gemm::bf16_active() {
        eprintln!("--f32-peer: the products already run on f32 kernels here; no peer to add");
    }
    let f32_peer = f32_peer && rten_gemm::bf16_active();
    let arg_val = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let threads: usize = arg_val("--threads")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let keep = arg_val("--keep").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("rythmiq-ocr-eval-{}", std::process::id()))
    });
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {e}", dir.display());
        std::process::exit(1);
    }
    let tess_ok = use_tess
        && Command::new("tesseract")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if use_tess && !tess_ok {
        eprintln!("tesseract not found: apt-get install tesseract-ocr (comparison skipped)");
    }

    let load = || match OcrEngine::load(&EngineConfig {
        // load/ocr/bench.sh sets RYTHMIQ_MODELS_DIR, as it does for the binary.
        models_dir: std::env::var_os("RYTHMIQ_MODELS_DIR")
            .map_or_else(rythmiq_ocr::default_models_dir, std::path::PathBuf::from),
        threads,
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let engine = load();
    // The peer loads its own models while the f32 kernels are selected, so that its weights
    // are packed for them as the engine's are for the bf16 kernel.
    let peer_engine = f32_peer.then(|| {
        rten_gemm::set_bf16_enabled(false);
        let peer = load();
        rten_gemm::set_bf16_enabled(true);
        peer
    });
    let mut cases = build_set();
    for (i, a) in args.iter().enumerate() {
        if a == "--scan" {
            match args.get(i + 1).map(|s| load_scan(s)) {
                Some(Ok(c)) => cases.push(c),
                Some(Err(e)) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
                None => {
                    eprintln!("--scan needs IMAGE=REFERENCE.txt");
                    std::process::exit(2);
                }
            }
        }
    }
    println!(
        "{:<20} {:>9} {:>8} {:>4} | {:>9} {:>8}",
        "page", "ours CER", "CPU-s", "rot", "tess CER", "CPU-s"
    );
    // (is a scan, CER, CPU-s) per page, for ours and for Tesseract.
    let (mut ours, mut tess_res) = (vec![], vec![]);
    // With --f32-peer: (is a scan, CER, CPU-s) per page on the f32 kernels, beside `ours`.
    let mut peer = vec![];
    for c in &cases {
        let png = dir.join(format!("{}.png", c.name));
        if let Err(e) = c.image.save(&png) {
            eprintln!("{}: {e}", png.display());
            std::process::exit(1);
        }
        let _ = std::fs::write(dir.join(format!("{}.txt", c.name)), &c.text);
        let read = |engine: &OcrEngine| {
            let before = cpu_seconds(false);
            let page = match engine.recognize(&c.image, &OcrOptions::default()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{}: {e}", c.name);
                    std::process::exit(1);
                }
            };
            (page, cpu_seconds(false) - before)
        };
        let (page, cpu) = read(&engine);
        let cer = render::cer(&c.text, &page.text);
        ours.push((c.scan, cer, cpu));
        if let Some(peer_engine) = &peer_engine {
            rten_gemm::set_bf16_enabled(false);
            let (peer_page, peer_cpu) = read(peer_engine);
            rten_gemm::set_bf16_enabled(true);
            peer.push((c.scan, render::cer(&c.text, &peer_page.text), peer_cpu));
        }
        let tess = if tess_ok { tesseract(&png) } else { None };
        match tess {
            Some((text, tcpu)) => {
                let tc = render::cer(&c.text, &text);
                tess_res.push((c.scan, tc, tcpu));
                println!(
                    "{:<20} {cer:>9.4} {cpu:>8.2} {:>4} | {tc:>9.4} {tcpu:>8.2}",
                    c.name, page.rotation
                );
            }
            None => println!(
                "{:<20} {cer:>9.4} {cpu:>8.2} {:>4} |",
                c.name, page.rotation
            ),
        }
    }
    println!();
    summary("rythmiq-ocr", &format!("{threads} threads"), &ours);
    if !tess_res.is_empty() {
        summary(
            "tesseract 5",
            "--psm 1, one process per page incl. its start-up",
            &tess_res,
        );
        let all = |v: &[(bool, f64, f64)]| stats(v, |_| true);
        let ((oc, ou, _), (tc, tu, _)) = (all(&ours), all(&tess_res));
        println!(
            "ratio ours/tesseract (all pages): CER {:.2}x, CPU {:.2}x",
            oc / tc.max(1e-9),
            ou / tu.max(1e-9)
        );
    }
    if f32_peer {
        println!();
        println!(
            "{:<20} {:>9} {:>8} | {:>9} {:>8}   (the same models on each kernel, each page read on both, alternately)",
            "page", "bf16 CER", "CPU-s", "f32 CER", "CPU-s"
        );
        for (c, ((_, cer, cpu), (_, pcer, pcpu))) in cases.iter().zip(ours.iter().zip(&peer)) {
            println!(
                "{:<20} {cer:>9.4} {cpu:>8.2} | {pcer:>9.4} {pcpu:>8.2}",
                c.name
            );
        }
        summary(
            "rythmiq-ocr on the f32 kernels",
            &format!("{threads} threads"),
            &peer,
        );
        let all = |v: &[(bool, f64, f64)]| stats(v, |_| true);
        let scans = |v: &[(bool, f64, f64)]| stats(v, |scan| scan);
        let ((bc, bu, _), (fc, fu, _)) = (all(&ours), all(&peer));
        let ((_, bsu, _), (_, fsu, _)) = (scans(&ours), scans(&peer));
        println!(
            "ratio bf16/f32 (all pages): CER {:.2}x, median CPU {:.2}x; real scans: median CPU {:.2}x",
            bc / fc.max(1e-9),
            bu / fu.max(1e-9),
            bsu / fsu.max(1e-9)
        );
    }
    println!("goal: mean CER <= 0.01, below Tesseract's, at <= 0.5 CPU-s median per page");
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
