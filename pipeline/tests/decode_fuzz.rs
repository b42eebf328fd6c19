//! The decoder's fuzz harness: the inputs that once broke something, and a mutational fuzzer over
//! one small valid file per format and the fixtures. Both call the decoder without its panic
//! guard (`decode::fuzzing`), so a panic in any decoder fails the run.
//!
//! The default run is quick (400 cases) and part of the suite; `DECODE_FUZZ_ITERS`,
//! `DECODE_FUZZ_SEED` and `DECODE_FUZZ_SECS` make it longer, e.g.
//! `DECODE_FUZZ_ITERS=1000000 DECODE_FUZZ_SECS=600 cargo test -p rythmiq-pipeline --release
//! --test decode_fuzz`.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use image::ImageReader;
use rythmiq_pipeline::decode::{DecodeLimits, fuzzing};

#[path = "support/samples.rs"]
mod samples;
use samples::small_photo_in_every_format;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// libjpeg's scaled size (`jdiv_round_up`).
fn scaled_size(stored: (u32, u32), eighths: u32) -> (u32, u32) {
    (
        (stored.0 * eighths).div_ceil(8),
        (stored.1 * eighths).div_ceil(8),
    )
}

/// Every file kept in `decode-regressions/` must decode to Rgb8 or fail cleanly.
#[test]
fn decode_regressions_do_not_panic() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/decode-regressions"
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        // Straight into the decoder, without `catch_unwind`, so a panic fails this test.
        check_no_panic(&bytes, &path.display().to_string());
        seen += 1;
    }
    assert!(seen > 0, "no regression inputs found in {dir}");
}

fn fuzz_limits() -> DecodeLimits {
    // Small limits keep each case fast; the code paths are the same.
    DecodeLimits {
        max_width: 2_000,
        max_height: 2_000,
        max_pixels: 2_000_000,
        max_alloc_bytes: 64 * 1024 * 1024,
        ..DecodeLimits::default()
    }
}

fn check_no_panic(bytes: &[u8], what: &str) {
    match fuzzing::decode_unguarded(bytes, &fuzz_limits()) {
        Ok(img) => {
            assert!(img.as_rgb8().is_some(), "{what}: not Rgb8");
            assert!(img.width() > 0 && img.height() > 0, "{what}: empty image");
        }
        Err(e) => assert!(!e.to_string().is_empty(), "{what}"),
    }
    // The seed inputs are too small for `decode_checked` to choose the reduced path, so JPEGs also
    // go straight into libjpeg at every scale, after the same header checks.
    let Ok(stored) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .and_then(|r| r.into_dimensions().map_err(std::io::Error::other))
    else {
        return;
    };
    if !bytes.starts_with(&[0xFF, 0xD8])
        || fuzzing::check_dimensions(stored.0, stored.1, &fuzz_limits()).is_err()
    {
        return;
    }
    for eighths in [1u32, 2, 4] {
        let want = scaled_size(stored, eighths);
        if let Ok(img) = fuzzing::decode_jpeg_scaled(bytes, stored, eighths, want) {
            assert_eq!(img.dimensions(), want, "{what} at {eighths}/8");
        }
    }
}

/// Seeds: one small valid file per format (and code path), fixtures included.
fn fuzz_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = small_photo_in_every_format()
        .into_iter()
        .map(|(format, bytes)| (format!("{format:?}"), bytes))
        .collect();
    for name in [
        "progressive.jpg",
        "cmyk-adobe.jpg",
        "cmyk-ycck.jpg",
        "cmyk-ycck-progressive.jpg",
        "cmyk-no-adobe.jpg",
        "adobergb.png",
        "adobergb.jpg",
        "card.heic",
        "card-irot270.heic",
        "card-alpha.heic",
        "adobergb.heic",
    ] {
        seeds.push((name.to_owned(), fixture(name)));
    }
    seeds
}

/// A mutational fuzzer over the seed inputs: bit flips, byte overwrites with "interesting" values,
/// truncation, duplication and splicing, all from a fixed-seed PRNG so any failure replays.
/// `DECODE_FUZZ_ITERS` sets the number of cases (default 400), `DECODE_FUZZ_SEED` the PRNG
/// seed and `DECODE_FUZZ_SECS` a time budget, for long runs.
/// On a panic the failing input is written to `decode-fuzz-crash.bin` in Cargo's temporary
/// directory for integration tests (`target/tmp`).
#[test]
fn fuzz_mutated_seeds() {
    let iters: u64 = std::env::var("DECODE_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seed0: u64 = std::env::var("DECODE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED);
    let seeds = fuzz_seeds();
    let mut rng = seed0 | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // `DECODE_FUZZ_SECS` stops the run early (a time budget for long runs).
    let budget = std::env::var("DECODE_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::MAX, Duration::from_secs);
    let started = Instant::now();
    let mut done = 0u64;
    for i in 0..iters {
        if started.elapsed() > budget {
            break;
        }
        done += 1;
        let (name, base) = &seeds[(next() % seeds.len() as u64) as usize];
        let mut data = base.clone();
        for _ in 0..=(next() % 8) {
            let len = data.len().max(1) as u64;
            let pos = (next() % len) as usize;
            match next() % 7 {
                0 => {
                    if let Some(b) = data.get_mut(pos) {
                        *b ^= 1 << (next() % 8);
                    }
                }
                1 => {
                    const INTERESTING: [u8; 8] = [0, 1, 0x7F, 0x80, 0xFE, 0xFF, 0x10, 0x40];
                    if let Some(b) = data.get_mut(pos) {
                        *b = INTERESTING[(next() % 8) as usize];
                    }
                }
                2 => data.truncate(pos.max(1)),
                3 => {
                    let end = (pos + (next() % 64) as usize).min(data.len());
                    let piece = data[pos..end].to_vec();
                    let at = (next() % len) as usize;
                    data.splice(at.min(data.len())..at.min(data.len()), piece);
                }
                4 => {
                    if let Some(b) = data.get_mut(pos) {
                        *b = (next() & 0xFF) as u8;
                    }
                }
                5 => {
                    // Big-endian 16/32-bit field set to a large value (dimensions, lengths).
                    let v = [0xFFu8, 0xFF, 0x7F, 0xFF];
                    for (k, b) in data
                        .iter_mut()
                        .skip(pos)
                        .enumerate()
                        .take(2 + (next() % 3) as usize)
                    {
                        *b = v[k % 4];
                    }
                }
                _ => {
                    let (_, other) = &seeds[(next() % seeds.len() as u64) as usize];
                    let cut = (next() % other.len() as u64) as usize;
                    data.truncate(pos);
                    data.extend_from_slice(&other[cut..]);
                }
            }
        }
        if data.is_empty() {
            continue;
        }
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            check_no_panic(&data, name);
        }));
        if result.is_err() {
            let out = concat!(env!("CARGO_TARGET_TMPDIR"), "/decode-fuzz-crash.bin");
            std::fs::write(out, &data).unwrap();
            panic!("case {i} (mutated {name}) panicked; input saved to {out}");
        }
    }
    eprintln!(
        "fuzz: {done} cases in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
