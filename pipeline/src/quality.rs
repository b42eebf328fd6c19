//! QUALITY stage: one score in [0, 1] that decides between the fast path (ENHANCE skipped) and the
//! standard path.
//!
//! Everything is measured on a grey copy box-averaged by an integer factor so that its long side is
//! at most [`ANALYSIS_MAX_SIDE`] (512) pixels. That keeps the stage at a few milliseconds on a 12 MP
//! photo, and it measures the image near the scale the portal file will have (portal photos are a
//! few hundred pixels wide), so blur or grain that vanishes in the output does not count.
//!
//! # Signals (each a sub-score in [0, 1], 1 = good)
//!
//! The grey copy is cut into 32 × 32 tiles. In each tile we compute the variance of the 4-neighbour
//! Laplacian (`VoL`) and Immerkær's noise estimate `σ = √(π/2) / 6 · mean |I ∗ M|` with
//! `M = [1 −2 1; −2 4 −2; 1 −2 1]` (the product of two second differences: zero on flat areas,
//! on ramps and on curvature along one axis, so smooth tiles show the sensor noise alone).
//!
//! - **noise**: `σ` = the 25th percentile of the tile estimates over tiles with under 5 % clipped
//!   pixels (flat tiles carry the noise alone; clipped ones hide it). `noise = exp(−max(0, σ − 1.5) / 3)`
//!   (grey levels 0–255): up to 1.5 levels is what a good camera leaves after downscaling, and each
//!   further 3 levels multiplies the score by 1/e.
//! - **sharpness**: `v` = the 90th percentile of the tile `VoL` (the in-focus subject decides; a plain
//!   background does not mean blur), minus `20 σ²`, the part white noise contributes to the
//!   Laplacian's variance (Σk² = 20 for the kernel). `sharpness = 1 − exp(−v / 500)`: 500 is the
//!   `VoL` (grey levels²) at which a detailed tile is clearly in focus at this scale (score 0.63);
//!   the calibration photos below measure 1,100–3,500 clean, 15–160 after a 1.5 px Gaussian blur
//!   and under 45 after a 3 px one.
//! - **exposure**, from the 256-bin histogram: mean luminance `μ` in [0, 1] and the fraction `f₀` of
//!   pixels at or below 8 (crushed shadows).
//!   `exposure = exp(−(d² + b² + c²))` with `d = max(0, 0.25 − μ) / 0.08` (darker than a quarter of
//!   full scale is under-exposed), `b = max(0, μ − 0.92) / 0.05` (only very bright images are
//!   penalised, because a scanned page or a signature on white paper legitimately averages 0.85–0.92)
//!   and `c = max(0, f₀ − 0.15) / 0.20` (more than 15 % crushed blacks).
//! - **contrast**: spread `s = p99 − p1` of the histogram, in [0, 1].
//!   `contrast = 1 − exp(−(s / 0.45)²)` (0.98 for a full-range photo, 0.42 for a spread of 0.33). We use the 1st/99th percentiles rather than 5th/95th
//!   because a signature or a page is mostly paper: its ink can cover under 5 % of the pixels, and a
//!   5th percentile would miss it.
//! - **resolution**: `r²` with `r = min(1, src_w / target_w, src_h / target_h)`, the inverse of the
//!   up-scaling the SCHEMA stage needs after cropping to the target aspect; squared, it is the share
//!   of the output's pixels the source really provides. 1 when the source has enough pixels (or
//!   when no target is given).
//!
//! # Score
//!
//! A weighted geometric mean, so one bad signal drags the score down however good the rest are:
//! `score = sharpness^0.30 · exposure^0.20 · contrast^0.10 · noise^0.25 · resolution^0.15`.
//! A sub-score of 0.30 alone brings the score to 0.70 (sharpness), 0.74 (noise), 0.79 (exposure),
//! 0.83 (resolution) or 0.89 (contrast: low contrast also lowers the Laplacian, so it is partly
//! counted by sharpness already). [`FAST_PATH_THRESHOLD`] is 0.80, the fast-path guard.
//!
//! # Calibration
//!
//! Real photos shipped by scikit-image 0.26 (`skimage/data`: astronaut, NASA, public domain;
//! rocket, SpaceX, public domain; chelsea, coffee and camera, CC0; text, public domain; page, the
//! package's sample scan), target 200 × 230. Clearly degraded variants: blur = Gaussian σ 3 px,
//! dark = every channel × 0.3, noisy = additive Gaussian σ 20 grey levels; milder ones for context
//! (σ 1.5 blur, × 0.5, σ 10 noise, and "flat" = tones squeezed to 35 % around mid-grey).
//!
//! | photo            | clean | blur 3 | dark 0.3 | noisy 20 | blur 1.5 | dark 0.5 | noisy 10 | flat |
//! |------------------|-------|--------|----------|----------|----------|----------|----------|------|
//! | astronaut 512²   | 1.00  | 0.29   | 0.43     | 0.39     | 0.53     | 0.84     | 0.64     | 0.71 |
//! | rocket 640×427   | 0.98  | 0.36   | 0.23     | 0.64     | 0.66     | 0.49     | 0.82     | 0.69 |
//! | chelsea 451×300  | 0.95  | 0.20   | 0.34     | 0.36     | 0.34     | 0.69     | 0.62     | 0.55 |
//! | coffee 600×400   | 0.95  | 0.47   | 0.43     | 0.64     | 0.75     | 0.85     | 0.81     | 0.78 |
//! | camera 512²      | 1.00  | 0.28   | 0.52     | 0.39     | 0.51     | 0.90     | 0.65     | 0.77 |
//! | page 384×191     | 0.87  | 0.25   | 0.73     | 0.35     | 0.55     | 0.89     | 0.57     | 0.83 |
//! | text 448×172     | 0.82  | 0.17   | 0.29     | 0.33     | 0.38     | 0.57     | 0.53     | 0.44 |
//!
//! Every clean photo takes the fast path and every clearly degraded one the standard path; the
//! milder variants fall on either side, as they should near a threshold. (Images that are not
//! portal uploads score low when clean: the Hubble deep field, mostly black, 0.31; a retina fundus
//! photo, soft by nature, 0.74. That only costs them an ENHANCE run.) The clean astronaut measured
//! against a 1,240 × 1,754 document target scores 0.69 (resolution 0.09): a small photo for a
//! large target goes to the standard path too. Noise is measured at analysis scale, so σ 20 on a
//! 600 px photo reads as ~σ 7 after the 2× reduction: that is why rocket and coffee score higher
//! when noisy than the 512 px images.
//!
//! Cost (release, one core, CPU time of the calling thread): 4,000 × 3,000 RGB in 6–7 ms best case
//! (one pass over the 36 MB of pixels builds the analysis copy; the statistics on it take ~2 ms);
//! up to ~18 ms on average while other builds were competing for this 2-core machine.
//!
//! # Decoder filler (a second line of defence)
//!
//! A decoder that "recovers" from a truncated or damaged file fills what it could not read with
//! one flat colour: libjpeg-turbo and zune-jpeg with mid-grey (128, 128, 128), to the end of the
//! image. The decode stage refuses such files (`decode::jpeg_damage`); in case some file slips
//! through, [`assess`] also looks for that filler: a band along one edge of the image (the
//! bottom, or another edge once EXIF orientation has turned it) of at least
//! [`FILL_MIN_SHARE`] of the image where every pixel has the same neutral, mid-level colour
//! (R = G = B ± 1, level 64–192), which no camera produces (sensor noise alone varies it). The
//! band's share is [`QualityReport::flat_fill`]; when it is reached, the score is capped at
//! [`FILL_SCORE_CAP`] (standard path) and [`QualityReport::warning`] asks the user to check the
//! file. It is a warning rather than an error because it proves nothing: QUALITY cannot tell a
//! decoder's filler from an odd but intended picture. Other flat areas do not count: paper white
//! (a scan's margins, a signature's paper) and black are outside the level range, and a digitally
//! filled backdrop behind a portrait is coloured or light and sits at the top, not a grey band
//! at an edge.
//!
//! # Known limits
//!
//! - Images that are texture everywhere (grass, gravel, fabric filling the frame) have no flat tile,
//!   so their noise is over-estimated and they may be sent to the standard path needlessly, which
//!   costs CPU, not quality.
//! - Sharpness depends on content: a photo of a blank wall has no edges to be sharp. Portal uploads
//!   (faces, signatures, pages) always have some.

use image::RgbImage;

/// Score at or above which an image takes the fast path (ENHANCE skipped): the fast-path guard.
pub const FAST_PATH_THRESHOLD: f32 = 0.80;

/// Long side, in pixels, of the grey copy every signal is measured on.
pub const ANALYSIS_MAX_SIDE: u32 = 512;

/// Side of the square tiles used for the local sharpness and noise statistics.
const TILE: usize = 32;

/// Grey levels (0–255) of noise a good camera leaves after downscaling; not penalised.
const NOISE_FREE_SIGMA: f32 = 1.5;
/// Grey levels of noise above [`NOISE_FREE_SIGMA`] that divide the noise score by e.
const NOISE_SCALE: f32 = 3.0;
/// Variance of the Laplacian (grey levels²) at which the sharpness score reaches 1 − 1/e.
const SHARPNESS_SCALE: f32 = 500.0;
/// Mean luminance below which an image counts as under-exposed, and the falloff width.
const DARK_MEAN: f32 = 0.25;
const DARK_WIDTH: f32 = 0.08;
/// Mean luminance above which an image counts as over-exposed, and the falloff width.
const BRIGHT_MEAN: f32 = 0.92;
const BRIGHT_WIDTH: f32 = 0.05;
/// Grey level at or below which a pixel counts as a crushed shadow.
const SHADOW_LEVEL: usize = 8;
/// Fraction of crushed shadows tolerated, and the falloff width beyond it.
const SHADOW_FRACTION: f32 = 0.15;
const SHADOW_WIDTH: f32 = 0.20;
/// p99 − p1 spread (fraction of full scale) at which the contrast score reaches 1 − 1/e.
const CONTRAST_SCALE: f32 = 0.45;

/// Share of the image a flat mid-grey band along one edge must cover to count as a decoder's
/// filler (see the module documentation).
pub const FILL_MIN_SHARE: f32 = 0.2;
/// The score of an image with such a band, at most: below [`FAST_PATH_THRESHOLD`].
pub const FILL_SCORE_CAP: f32 = 0.3;
/// Grey levels a filler band may have (decoders fill with 128; an ICC conversion moves it a
/// little).
const FILL_LEVELS: std::ops::RangeInclusive<u8> = 64..=192;

/// Weights of the geometric mean (they sum to 1).
const W_SHARPNESS: f32 = 0.30;
const W_EXPOSURE: f32 = 0.20;
const W_CONTRAST: f32 = 0.10;
const W_NOISE: f32 = 0.25;
const W_RESOLUTION: f32 = 0.15;

/// What QUALITY measured. Every field is in [0, 1], 1 being best, except `flat_fill` (0 best).
#[derive(Debug, Clone, serde::Serialize)]
pub struct QualityReport {
    /// The combined score (weighted geometric mean of the sub-scores).
    pub score: f32,
    /// Focus, from the variance of the Laplacian of the most detailed tiles.
    pub sharpness: f32,
    /// Brightness: penalises a dark mean, a blown-out mean and crushed shadows.
    pub exposure: f32,
    /// Tonal spread between the 1st and 99th luminance percentiles.
    pub contrast: f32,
    /// Absence of noise (Immerkær's estimate in flat tiles).
    pub noise: f32,
    /// Source pixels relative to the target size, saturating at 1.
    pub resolution: f32,
    /// Share of the image covered by a flat mid-grey band along one edge, the way a decoder
    /// fills a damaged file (0 for a sound one; see the module documentation).
    pub flat_fill: f32,
}

impl QualityReport {
    /// Whether the image is good enough to skip ENHANCE (score ≥ [`FAST_PATH_THRESHOLD`]).
    pub fn fast_path(&self) -> bool {
        self.score >= FAST_PATH_THRESHOLD
    }

    /// What the user should be told about the image, if anything: a band that looks like a
    /// decoder's filler.
    pub fn warning(&self) -> Option<String> {
        (self.flat_fill >= FILL_MIN_SHARE).then(|| {
            format!(
                "{:.0} % of the image is one flat grey band along its edge, as a damaged or \
                 incomplete file decodes; check the result, or upload the original file again",
                self.flat_fill * 100.0
            )
        })
    }
}

/// Measures an image against a target size (`0` for either side means "no target": resolution 1).
///
/// Pure and cheap: reads every source pixel once to build the grey analysis copy, then works on at
/// most 512 × 512 values.
pub fn assess(img: &RgbImage, target_width: u32, target_height: u32) -> QualityReport {
    let resolution = resolution_score(img.width(), img.height(), target_width, target_height);
    let flat_fill = flat_fill_share(img);
    let grey = GreyPlane::downscaled(img, ANALYSIS_MAX_SIDE);
    if grey.width < 3 || grey.height < 3 {
        // Nothing measurable (a few pixels): certainly not fast-path material.
        return QualityReport {
            score: 0.0,
            sharpness: 0.0,
            exposure: 0.0,
            contrast: 0.0,
            noise: 0.0,
            resolution,
            flat_fill,
        };
    }

    let hist = grey.histogram();
    let (exposure, contrast) = tone_scores(&hist);
    let tiles = tile_stats(&grey);
    let sigma = noise_sigma(&tiles);
    let noise = (-(sigma - NOISE_FREE_SIGMA).max(0.0) / NOISE_SCALE).exp();
    let sharpness = sharpness_score(&tiles, sigma);

    let mut score = combine(sharpness, exposure, contrast, noise, resolution);
    if flat_fill >= FILL_MIN_SHARE {
        score = score.min(FILL_SCORE_CAP);
    }
    QualityReport {
        score,
        sharpness,
        exposure,
        contrast,
        noise,
        resolution,
        flat_fill,
    }
}

/// The largest share of `img` (its height for a band of rows, its width for one of columns)
/// covered by a band along one edge in which every pixel has the same neutral mid-level colour
/// (see the module documentation). Reads only the band and the line after it, so a sound image
/// costs one row and one column per edge.
fn flat_fill_share(img: &RgbImage) -> f32 {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return 0.0;
    }
    // The filler's colour: the corner pixel's, if it is neutral and mid-level.
    let filler = |x: u32, y: u32| {
        let p = img.get_pixel(x, y).0;
        let neutral = p.iter().all(|&c| c.abs_diff(p[0]) <= 1);
        (neutral && FILL_LEVELS.contains(&p[0])).then_some(p)
    };
    let same = |x: u32, y: u32, want: [u8; 3]| {
        img.get_pixel(x, y)
            .0
            .iter()
            .zip(want)
            .all(|(&c, w)| c.abs_diff(w) <= 1)
    };
    let rows = |ys: &mut dyn Iterator<Item = u32>, corner: (u32, u32)| -> u32 {
        let Some(want) = filler(corner.0, corner.1) else {
            return 0;
        };
        ys.take_while(|&y| (0..w).all(|x| same(x, y, want)))
            .fold(0, |n, _| n + 1)
    };
    let cols = |xs: &mut dyn Iterator<Item = u32>, corner: (u32, u32)| -> u32 {
        let Some(want) = filler(corner.0, corner.1) else {
            return 0;
        };
        xs.take_while(|&x| (0..h).all(|y| same(x, y, want)))
            .fold(0, |n, _| n + 1)
    };
    let bottom = rows(&mut (0..h).rev(), (0, h - 1));
    let top = rows(&mut (0..h), (0, 0));
    let right = cols(&mut (0..w).rev(), (w - 1, 0));
    let left = cols(&mut (0..w), (0, 0));
    let share = |n: u32, of: u32| n as f32 / of as f32;
    share(bottom.max(top), h).max(share(right.max(left), w))
}

/// Weighted geometric mean of the sub-scores, clamped to [0, 1].
fn combine(sharpness: f32, exposure: f32, contrast: f32, noise: f32, resolution: f32) -> f32 {
    let s = sharpness.clamp(0.0, 1.0).powf(W_SHARPNESS)
        * exposure.clamp(0.0, 1.0).powf(W_EXPOSURE)
        * contrast.clamp(0.0, 1.0).powf(W_CONTRAST)
        * noise.clamp(0.0, 1.0).powf(W_NOISE)
        * resolution.clamp(0.0, 1.0).powf(W_RESOLUTION);
    s.clamp(0.0, 1.0)
}

/// `min(1, src_w / target_w, src_h / target_h)²`; 1 when there is no target.
fn resolution_score(src_w: u32, src_h: u32, target_w: u32, target_h: u32) -> f32 {
    if target_w == 0 || target_h == 0 {
        return 1.0;
    }
    let rx = src_w as f32 / target_w as f32;
    let ry = src_h as f32 / target_h as f32;
    let linear = rx.min(ry).clamp(0.0, 1.0);
    // Squared: the share of the output's pixels the source really provides.
    linear * linear
}

/// A grey image as `f32` grey levels (0–255); `f32` keeps the sub-level precision box averaging
/// produces, which the noise estimate needs on clean, heavily downscaled photos.
#[derive(Debug, Clone)]
pub(crate) struct GreyPlane {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) data: Vec<f32>,
}

impl GreyPlane {
    /// BT.601 luma of `img`, box-averaged by the smallest integer factor that brings the long side
    /// to at most `max_side`. Up to `factor − 1` trailing rows/columns are dropped, which no
    /// statistic here notices. One sequential pass over the source, integer arithmetic only.
    pub(crate) fn downscaled(img: &RgbImage, max_side: u32) -> GreyPlane {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let long = w.max(h);
        let max_side = (max_side as usize).max(1);
        let factor = long.div_ceil(max_side).max(1);
        let (out_w, out_h) = (w / factor, h / factor);
        let mut data = Vec::with_capacity(out_w * out_h);
        if out_w == 0 || out_h == 0 {
            return GreyPlane {
                width: out_w,
                height: out_h,
                data,
            };
        }
        let raw = img.as_raw();
        let row_bytes = w * 3;
        let used_bytes = out_w * factor * 3;
        // Two passes per band of `factor` rows: first add the rows byte by byte into a column
        // accumulator (a plain slice add the compiler vectorises, which is what makes 12 MP cost a
        // few milliseconds), then fold each block's R, G and B sums into luma. u16 holds
        // factor × 255 as long as factor ≤ 257, i.e. a long side up to ~131,000 pixels; u32 is
        // used beyond that.
        let norm = 1.0 / (256.0 * (factor * factor) as f32);
        let band = BandSums {
            raw,
            row_bytes,
            used_bytes,
            factor,
            norm,
        };
        if factor <= 257 {
            band.fold_all::<u16>(out_h, &mut data);
        } else {
            band.fold_all::<u32>(out_h, &mut data);
        }
        GreyPlane {
            width: out_w,
            height: out_h,
            data,
        }
    }

    /// 256-bin histogram of the rounded grey levels.
    pub(crate) fn histogram(&self) -> [u32; 256] {
        let mut hist = [0u32; 256];
        for &v in &self.data {
            hist[(v.round().clamp(0.0, 255.0)) as usize] += 1;
        }
        hist
    }
}

/// The band-by-band downscale of [`GreyPlane`]'s constructor, generic over the accumulator
/// width so small factors use the narrow (faster) one.
struct BandSums<'a> {
    raw: &'a [u8],
    row_bytes: usize,
    used_bytes: usize,
    factor: usize,
    norm: f32,
}

impl BandSums<'_> {
    fn fold_all<T>(&self, out_h: usize, data: &mut Vec<f32>)
    where
        T: Copy + Default + From<u8> + Into<u32> + std::ops::AddAssign,
    {
        let mut cols = vec![T::default(); self.used_bytes];
        for oy in 0..out_h {
            cols.iter_mut().for_each(|c| *c = T::default());
            for y in oy * self.factor..(oy + 1) * self.factor {
                let start = y * self.row_bytes;
                if let Some(row) = self.raw.get(start..start + self.used_bytes) {
                    for (c, &v) in cols.iter_mut().zip(row) {
                        *c += T::from(v);
                    }
                }
            }
            fold_blocks(&cols, self.factor, self.norm, data);
        }
    }
}

/// Turns one band's per-byte column sums into luma values, one per `factor`-pixel block.
fn fold_blocks<T: Copy + Into<u32>>(cols: &[T], factor: usize, norm: f32, out: &mut Vec<f32>) {
    for block in cols.chunks_exact(factor * 3) {
        let (mut r, mut g, mut b) = (0u64, 0u64, 0u64);
        for px in block.chunks_exact(3) {
            r += u64::from(px[0].into());
            g += u64::from(px[1].into());
            b += u64::from(px[2].into());
        }
        // BT.601 weights ×256 (77 + 150 + 29 = 256).
        out.push((77 * r + 150 * g + 29 * b) as f32 * norm);
    }
}

/// The grey level below which `fraction` of the pixels lie.
pub(crate) fn percentile(hist: &[u32; 256], fraction: f32) -> usize {
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    let target = (fraction.clamp(0.0, 1.0) as f64 * total as f64).ceil() as u64;
    let mut seen = 0u64;
    for (level, &count) in hist.iter().enumerate() {
        seen += u64::from(count);
        if seen >= target.max(1) {
            return level;
        }
    }
    255
}

/// Exposure and contrast sub-scores from the histogram (see the module doc).
fn tone_scores(hist: &[u32; 256]) -> (f32, f32) {
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return (0.0, 0.0);
    }
    let sum: u64 = hist
        .iter()
        .enumerate()
        .map(|(level, &c)| level as u64 * u64::from(c))
        .sum();
    let mean = sum as f32 / total as f32 / 255.0;
    let shadows: u64 = hist[..=SHADOW_LEVEL].iter().map(|&c| u64::from(c)).sum();
    let shadow_fraction = shadows as f32 / total as f32;

    let d = (DARK_MEAN - mean).max(0.0) / DARK_WIDTH;
    let b = (mean - BRIGHT_MEAN).max(0.0) / BRIGHT_WIDTH;
    let c = (shadow_fraction - SHADOW_FRACTION).max(0.0) / SHADOW_WIDTH;
    let exposure = (-(d * d + b * b + c * c)).exp();

    let spread = (percentile(hist, 0.99) as f32 - percentile(hist, 0.01) as f32).max(0.0) / 255.0;
    let contrast = 1.0 - (-(spread / CONTRAST_SCALE).powi(2)).exp();
    (exposure, contrast)
}

/// Per-tile statistics on the analysis copy.
#[derive(Debug, Clone, Copy)]
struct TileStat {
    /// Variance of the 4-neighbour Laplacian.
    laplacian_variance: f32,
    /// Immerkær noise estimate (grey levels).
    sigma: f32,
    /// Fraction of pixels at 0–2 or 253–255, where clipping hides noise.
    clipped: f32,
}

/// Laplacian variance and Immerkær noise for each `TILE × TILE` tile of the interior pixels.
fn tile_stats(grey: &GreyPlane) -> Vec<TileStat> {
    let (w, h) = (grey.width, grey.height);
    let tiles_x = (w - 2).div_ceil(TILE);
    let tiles_y = (h - 2).div_ceil(TILE);
    let n_tiles = tiles_x * tiles_y;
    let mut sum_l = vec![0f64; n_tiles];
    let mut sum_l2 = vec![0f64; n_tiles];
    let mut sum_m = vec![0f64; n_tiles];
    let mut clipped = vec![0u32; n_tiles];
    let mut count = vec![0u32; n_tiles];
    let d = &grey.data;
    for y in 1..h - 1 {
        let ty = (y - 1) / TILE;
        let (up, mid, down) = (
            &d[(y - 1) * w..y * w],
            &d[y * w..(y + 1) * w],
            &d[(y + 1) * w..(y + 2) * w],
        );
        // Sum one tile-width run of a row in f32 locals, then add it to the tile's f64 totals:
        // keeps the per-pixel work to a few float operations.
        for tx in 0..tiles_x {
            let x0 = 1 + tx * TILE;
            let x1 = (x0 + TILE).min(w - 1);
            let (mut sl, mut sl2, mut sm, mut clip) = (0f32, 0f32, 0f32, 0u32);
            for x in x0..x1 {
                let c = mid[x];
                let lap = 4.0 * c - up[x] - down[x] - mid[x - 1] - mid[x + 1];
                let m = (up[x - 1] + up[x + 1] + down[x - 1] + down[x + 1])
                    - 2.0 * (up[x] + down[x] + mid[x - 1] + mid[x + 1])
                    + 4.0 * c;
                sl += lap;
                sl2 += lap * lap;
                sm += m.abs();
                clip += u32::from(!(2.5..252.5).contains(&c));
            }
            let t = ty * tiles_x + tx;
            sum_l[t] += f64::from(sl);
            sum_l2[t] += f64::from(sl2);
            sum_m[t] += f64::from(sm);
            clipped[t] += clip;
            count[t] += (x1 - x0) as u32;
        }
    }
    let immerkaer = (std::f64::consts::PI / 2.0).sqrt() / 6.0;
    (0..n_tiles)
        .filter(|&t| count[t] > 0)
        .map(|t| {
            let n = f64::from(count[t]);
            let mean = sum_l[t] / n;
            TileStat {
                laplacian_variance: (sum_l2[t] / n - mean * mean).max(0.0) as f32,
                sigma: (immerkaer * sum_m[t] / n) as f32,
                clipped: clipped[t] as f32 / count[t] as f32,
            }
        })
        .collect()
}

/// Value at `fraction` of the sorted values (nearest rank); 0 for an empty list.
fn quantile(mut values: Vec<f32>, fraction: f32) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    let idx = ((values.len() - 1) as f32 * fraction.clamp(0.0, 1.0)).round() as usize;
    values[idx.min(values.len() - 1)]
}

/// Noise σ (grey levels): low percentile over unclipped tiles, so the flattest tiles decide.
fn noise_sigma(tiles: &[TileStat]) -> f32 {
    let unclipped: Vec<f32> = tiles
        .iter()
        .filter(|t| t.clipped < 0.05)
        .map(|t| t.sigma)
        .collect();
    if unclipped.is_empty() {
        // Everything is clipped (a black or white frame): nothing to measure, call it clean.
        return 0.0;
    }
    quantile(unclipped, 0.25)
}

/// Sharpness from the 90th percentile tile `VoL`, with the noise's share removed.
fn sharpness_score(tiles: &[TileStat], sigma: f32) -> f32 {
    let vol = quantile(tiles.iter().map(|t| t.laplacian_variance).collect(), 0.90);
    let v = (vol - 20.0 * sigma * sigma).max(0.0);
    1.0 - (-v / SHARPNESS_SCALE).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A public-domain / CC0 photo from `tests/fixtures/photos` (see the README there).
    fn fixture(name: &str) -> RgbImage {
        let path = format!(
            "{}/tests/fixtures/photos/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        image::open(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .to_rgb8()
    }

    fn darken(img: &RgbImage, factor: f32) -> RgbImage {
        let mut out = img.clone();
        for p in out.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = (f32::from(*c) * factor).round() as u8;
            }
        }
        out
    }

    #[test]
    fn real_photos_clean_take_the_fast_path_blurred_and_dark_do_not() {
        for name in ["astronaut.jpg", "coffee.jpg"] {
            let clean = fixture(name);
            let blurred = imageproc::filter::gaussian_blur_f32(&clean, 3.0);
            let dark = darken(&clean, 0.3);
            let q_clean = assess(&clean, 200, 230);
            let q_blurred = assess(&blurred, 200, 230);
            let q_dark = assess(&dark, 200, 230);
            assert!(q_clean.fast_path(), "{name} clean: {q_clean:?}");
            assert!(!q_blurred.fast_path(), "{name} blurred: {q_blurred:?}");
            assert!(!q_dark.fast_path(), "{name} dark: {q_dark:?}");
            assert!(q_blurred.score < q_clean.score - 0.2, "{q_blurred:?}");
            assert!(q_dark.score < q_clean.score - 0.2, "{q_dark:?}");
            // The right signal moved.
            assert!(
                q_blurred.sharpness < 0.5 * q_clean.sharpness,
                "{q_blurred:?}"
            );
            assert!(q_dark.exposure < 0.5, "{q_dark:?}");
        }
    }

    #[test]
    fn real_photo_with_noise_goes_to_the_standard_path() {
        let clean = fixture("astronaut.jpg");
        let noisy = imageproc::noise::gaussian_noise(&clean, 0.0, 20.0, 7);
        let q = assess(&noisy, 200, 230);
        assert!(!q.fast_path() && q.noise < 0.3, "{q:?}");
    }

    #[test]
    fn small_source_for_a_large_target_is_penalised() {
        let clean = fixture("astronaut.jpg");
        let q = assess(&clean, 1240, 1754);
        assert!(q.resolution < 0.1 && !q.fast_path(), "{q:?}");
    }

    #[test]
    fn scores_stay_in_range() {
        let clean = fixture("coffee.jpg");
        let q = assess(&clean, 200, 230);
        for v in [
            q.score,
            q.sharpness,
            q.exposure,
            q.contrast,
            q.noise,
            q.resolution,
        ] {
            assert!((0.0..=1.0).contains(&v), "{q:?}");
        }
    }

    #[test]
    fn uniform_image_is_not_fast_path() {
        let img = RgbImage::from_pixel(300, 300, Rgb([128, 128, 128]));
        let q = assess(&img, 100, 100);
        assert!(q.sharpness < 0.01, "{q:?}");
        assert!(q.contrast < 0.01, "{q:?}");
        assert!(!q.fast_path());
    }

    #[test]
    fn tiny_and_empty_images_do_not_panic() {
        for (w, h) in [(0, 0), (1, 1), (2, 7), (3, 3), (5000, 1)] {
            let img = RgbImage::new(w, h);
            let q = assess(&img, 10, 10);
            assert!((0.0..=1.0).contains(&q.score), "{w}x{h}: {q:?}");
            assert!(!q.fast_path());
        }
    }

    #[test]
    fn resolution_saturates_and_tracks_the_tighter_side() {
        assert_eq!(resolution_score(400, 400, 200, 200), 1.0);
        assert!((resolution_score(100, 400, 200, 200) - 0.25).abs() < 1e-6);
        assert_eq!(resolution_score(10, 10, 0, 0), 1.0);
    }

    #[test]
    fn downscale_keeps_the_long_side_in_bounds_and_the_mean() {
        let img = RgbImage::from_fn(2000, 1500, |x, _| Rgb([(x % 256) as u8; 3]));
        let g = GreyPlane::downscaled(&img, ANALYSIS_MAX_SIDE);
        assert!(g.width <= 512 && g.height <= 512 && g.width >= 400);
        let mean = g.data.iter().sum::<f32>() / g.data.len() as f32;
        assert!((mean - 127.5).abs() < 3.0, "{mean}");
    }

    /// `img` with the part from `from_row` down replaced by libjpeg's and zune-jpeg's filler.
    fn grey_filled(img: &RgbImage, from_row: u32) -> RgbImage {
        let mut out = img.clone();
        for y in from_row..out.height() {
            for x in 0..out.width() {
                out.put_pixel(x, y, Rgb([128, 128, 128]));
            }
        }
        out
    }

    #[test]
    fn a_decoders_grey_filler_caps_the_score_and_warns() {
        let clean = fixture("astronaut.jpg");
        let q = assess(&clean, 200, 230);
        assert_eq!(q.flat_fill, 0.0, "{q:?}");
        assert!(q.warning().is_none());
        // The reported case: the lower 60 % of the photo grey, as a truncated JPEG decoded.
        let filled = grey_filled(&clean, clean.height() * 2 / 5);
        let q = assess(&filled, 200, 230);
        assert!((q.flat_fill - 0.6).abs() < 0.01, "{q:?}");
        assert!(q.score <= FILL_SCORE_CAP && !q.fast_path(), "{q:?}");
        let warning = q.warning().unwrap_or_default();
        assert!(
            warning.contains("60 %") && warning.contains("damaged"),
            "{warning}"
        );
        // Turned by EXIF orientation, the band is along another edge.
        let turned = image::imageops::rotate90(&filled);
        assert!(assess(&turned, 200, 230).flat_fill > 0.59);
        // A thin band is not enough.
        let thin = grey_filled(&clean, clean.height() * 9 / 10);
        assert!(assess(&thin, 200, 230).warning().is_none());
    }

    #[test]
    fn a_scans_white_margins_and_a_signatures_paper_pass() {
        // A photo scanned on a white page: wide margins of paper white all round.
        let photo = fixture("coffee.jpg");
        let mut page = RgbImage::from_pixel(1000, 1400, Rgb([255, 255, 255]));
        image::imageops::overlay(&mut page, &photo, 200, 500);
        let q = assess(&page, 413, 531);
        assert_eq!(q.flat_fill, 0.0, "{q:?}");
        assert!(q.warning().is_none());
        // A signature: dark ink on flat white paper, most of the image untouched paper; and on
        // light grey paper (a scanner's flat 230).
        for paper in [255u8, 230] {
            let mut sig = RgbImage::from_pixel(600, 250, Rgb([paper; 3]));
            for x in 60..540u32 {
                let y = 125.0 + 60.0 * (x as f32 / 40.0).sin();
                for dy in 0..4 {
                    sig.put_pixel(x, y as u32 + dy, Rgb([20, 20, 60]));
                }
            }
            let q = assess(&sig, 140, 60);
            assert_eq!(q.flat_fill, 0.0, "paper {paper}: {q:?}");
            assert!(q.warning().is_none());
        }
    }

    #[test]
    fn percentiles_of_a_two_level_histogram() {
        let mut hist = [0u32; 256];
        hist[10] = 50;
        hist[200] = 50;
        assert_eq!(percentile(&hist, 0.01), 10);
        assert_eq!(percentile(&hist, 0.99), 200);
    }
}
