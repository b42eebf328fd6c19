//! ENHANCE stage (standard path only): repair what QUALITY found wrong, and nothing else.
//!
//! [`enhance`] is a pure function of its inputs: it never mutates the source image and keeps no
//! state, so the caller can run OCR on both the original and the enhanced image and keep the
//! original when OCR confidence drops (the OCR rollback lives in the caller). On the fast
//! path the caller skips this stage entirely.
//!
//! # Steps, in order, each gated so that a good image is left alone
//!
//! 1. **White balance** (any kind), only when a colour cast is measured. The illuminant is estimated
//!    white-patch style: the mean colour of the brightest 5 % of unclipped pixels, on a ≤ 256 px
//!    sample of the image. A cast is its largest channel deviation from its own mean; it is corrected
//!    when between 6 % and 45 % (above that the "cast" is more likely a coloured subject). For photos,
//!    whose brightest pixels may be a coloured background, the grey-world estimate (mean of all
//!    pixels) must point the same way before we correct; pages and signatures are on white paper, so
//!    the white patch is trusted alone. Correction: per-channel gains (clamped to [0.6, 1.6]) through
//!    lookup tables.
//! 2. **Denoise**, only when `quality.noise < 0.5`: a 3 × 3 median per channel (bit-identical to
//!    `imageproc::filter::median_filter(img, 1, 1)`, see Cost). A median keeps edges (text strokes,
//!    hair) where a blur would soften them; it runs before contrast so CLAHE does not amplify the
//!    grain.
//! 3. **Contrast normalisation**, only when `quality.contrast < 0.7` or `quality.exposure < 0.7`:
//!    a global levels stretch of the luma's 1st–99th percentiles to full scale, then CLAHE on the
//!    luma (8 × 8 tiles, clip limit 3 for pages, 2 for photos and signatures so faces do not look
//!    harsh, bilinear interpolation between the tiles' lookup tables). `imageproc` has no CLAHE, and
//!    its `equalize_histogram` is global and unclipped: on a page it blows the paper's grain up and
//!    on a face it posterises the skin, hence our own tiled, clipped version. The new luma is applied
//!    to R, G and B as a ratio `Y′ / Y` (capped at 6), which brightens without washing colours out.
//! 4. **Deskew** (documents only): on a binarised copy (Otsu via `imageproc`) with a long side of at
//!    most 1,024 px, the ink is projected on the vertical axis rotated by every angle in ±10° (0.5°
//!    steps, then 0.1° around the best); the angle whose projection profile has the largest energy
//!    (sum of squared bin counts: text lines make sharp peaks) wins. The page is turned only if that
//!    angle is at least 0.3° and its profile is clearly peakier than the average angle's (a photo or
//!    a blank page has no preferred angle). Rotation about the centre, bilinear, white fill (the
//!    same result as `imageproc::geometric_transformations::rotate_about_center`, see Cost). It
//!    runs last, so the white corners do not enter the histograms of steps 1–3.
//!
//! **Orientation** (90° / 180° turns) is not decided here: the OCR engine detects it far more
//! reliably than any pixel statistic, so it is left to the OCR stage.
//!
//! Sharpness is measured by QUALITY but not repaired: a sharpening filter cannot restore lost focus
//! and amplifies noise, so a blurred image only benefits from the other steps.
//!
//! # Cost
//!
//! Measurements run on reduced copies; only the corrections touch every pixel. We assume the caller
//! passes the image at its working size (decoded, possibly already reduced toward the target);
//! costs scale with the pixel count. Measured (release, one core, CPU time, best of 8, on a
//! 2-core machine busy with other builds): 4,000 × 3,000 photo, contrast only ~140 ms, denoise +
//! contrast ~165 ms; 4,000 × 3,000 page, contrast + deskew ~310 ms, all steps ~340 ms (the skew
//! search ~60 ms, the rotation ~100 ms); a 1,200 × 900 photo with every step ~12 ms. The median
//! and the rotation are our own because `imageproc`'s took ~3 s and ~0.5 s on 12 MP; the tests
//! check both against `imageproc`'s results.

use image::{GrayImage, Rgb, RgbImage};
use rythmiq_domain::DocumentKind;

use crate::quality::{GreyPlane, QualityReport, percentile};

/// Noise sub-score below which the median filter runs.
const DENOISE_BELOW: f32 = 0.5;
/// Contrast or exposure sub-score below which contrast normalisation runs.
const CONTRAST_BELOW: f32 = 0.7;
/// CLAHE grid (tiles per side) and clip limits (multiples of the mean bin count).
const CLAHE_TILES: usize = 8;
const CLAHE_CLIP_DOCUMENT: f32 = 3.0;
const CLAHE_CLIP_PHOTO: f32 = 2.0;
/// Largest factor by which contrast normalisation may scale a pixel (deep shadows).
const MAX_LUMA_GAIN: f32 = 6.0;
/// Colour cast range that white balance corrects (fractional deviation of a channel).
const CAST_MIN: f32 = 0.06;
const CAST_MAX: f32 = 0.45;
/// Skew search range and the smallest skew worth a resampling, in degrees.
const DESKEW_RANGE: f32 = 10.0;
const DESKEW_MIN: f32 = 0.3;
/// Long side of the binarised copy the skew is measured on.
const DESKEW_MAX_SIDE: u32 = 1024;

/// What ENHANCE did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnhanceReport {
    /// Names of the steps applied, in order (`white_balance`, `denoise`, `contrast`, `deskew`).
    pub applied: Vec<&'static str>,
    /// Clockwise rotation applied to straighten the page, in degrees (0 when not deskewed); a page
    /// photographed turned 4° clockwise gets −4.
    pub deskew_degrees: f32,
}

/// Enhances `img` for the standard path, choosing each step from the QUALITY sub-scores and from
/// measurements of its own (see the module doc). Returns a new image; the input is untouched.
pub fn enhance(
    img: &RgbImage,
    kind: DocumentKind,
    quality: &QualityReport,
) -> (RgbImage, EnhanceReport) {
    let mut report = EnhanceReport {
        applied: Vec::new(),
        deskew_degrees: 0.0,
    };
    let mut out = img.clone();
    if out.width() < 8 || out.height() < 8 {
        // Too small to measure anything; the SCHEMA stage will deal with it as it is.
        return (out, report);
    }

    if let Some(gains) = white_balance_gains(&out, kind) {
        apply_channel_gains(&mut out, gains);
        report.applied.push("white_balance");
    }

    if quality.noise < DENOISE_BELOW {
        out = median3x3(&out);
        report.applied.push("denoise");
    }

    if quality.contrast < CONTRAST_BELOW || quality.exposure < CONTRAST_BELOW {
        let clip = match kind {
            DocumentKind::Document => CLAHE_CLIP_DOCUMENT,
            DocumentKind::Photo | DocumentKind::Signature => CLAHE_CLIP_PHOTO,
        };
        normalise_contrast(&mut out, clip);
        report.applied.push("contrast");
    }

    if kind == DocumentKind::Document
        && let Some(skew) = measure_skew(&out)
    {
        out = rotate_bilinear(&out, (-skew).to_radians(), Rgb([255, 255, 255]));
        report.deskew_degrees = -skew;
        report.applied.push("deskew");
    }

    (out, report)
}

/// BT.601 luma (0–255) of one pixel, integer arithmetic.
fn luma(p: &Rgb<u8>) -> u8 {
    let [r, g, b] = p.0;
    ((77 * u32::from(r) + 150 * u32::from(g) + 29 * u32::from(b) + 128) >> 8) as u8
}

/// Largest fractional deviation of a colour's channels from their mean, and the normalised colour.
fn cast_of(c: [f64; 3]) -> (f32, [f64; 3]) {
    let m = (c[0] + c[1] + c[2]) / 3.0;
    if m <= 0.0 {
        return (0.0, [1.0; 3]);
    }
    let n = [c[0] / m, c[1] / m, c[2] / m];
    let cast = n.iter().map(|v| (v - 1.0).abs()).fold(0.0, f64::max);
    (cast as f32, n)
}

/// Per-channel gains that neutralise a measured colour cast, or `None` when there is none to fix.
fn white_balance_gains(img: &RgbImage, kind: DocumentKind) -> Option<[f32; 3]> {
    // A strided sample of at most ~256 × 256 pixels is plenty for two means.
    let stride = (img.width().max(img.height()).div_ceil(256)).max(1) as usize;
    let mut samples: Vec<(u8, [u8; 3])> = Vec::new();
    for row in img.rows().step_by(stride) {
        for p in row.step_by(stride) {
            let y = luma(p);
            // Clipped pixels lost their colour; near-black ones carry only noise.
            if p.0.iter().all(|&c| c < 250) && y > 20 {
                samples.push((y, p.0));
            }
        }
    }
    if samples.len() < 100 {
        return None;
    }
    let mut hist = [0u32; 256];
    for (y, _) in &samples {
        hist[usize::from(*y)] += 1;
    }
    let bright_level = percentile(&hist, 0.95);
    let mean_of = |keep: &dyn Fn(u8) -> bool| {
        let mut sum = [0f64; 3];
        let mut n = 0f64;
        for (y, c) in &samples {
            if keep(*y) {
                for k in 0..3 {
                    sum[k] += f64::from(c[k]);
                }
                n += 1.0;
            }
        }
        sum.map(|s| s / n.max(1.0))
    };
    let white = mean_of(&|y| usize::from(y) >= bright_level);
    let (cast, white_n) = cast_of(white);
    if !(CAST_MIN..=CAST_MAX).contains(&cast) {
        return None;
    }
    if kind == DocumentKind::Photo {
        // A coloured backdrop would fool the white patch alone; a real illuminant cast tints the
        // whole scene, so the grey-world mean must lean the same way.
        let (_, grey_n) = cast_of(mean_of(&|_| true));
        let agreement: f64 = (0..3).map(|k| (white_n[k] - 1.0) * (grey_n[k] - 1.0)).sum();
        if agreement <= 0.0 {
            return None;
        }
    }
    Some(white_n.map(|v| (1.0 / v as f32).clamp(0.6, 1.6)))
}

/// Multiplies each channel by its gain, through one lookup table per channel.
fn apply_channel_gains(img: &mut RgbImage, gains: [f32; 3]) {
    let luts: [[u8; 256]; 3] = gains.map(|g| {
        let mut lut = [0u8; 256];
        for (v, slot) in lut.iter_mut().enumerate() {
            *slot = (v as f32 * g).round().clamp(0.0, 255.0) as u8;
        }
        lut
    });
    for p in img.pixels_mut() {
        for k in 0..3 {
            p.0[k] = luts[k][usize::from(p.0[k])];
        }
    }
}

/// Global 1–99 % levels stretch followed by CLAHE, both on the luma, applied to RGB as a ratio.
fn normalise_contrast(img: &mut RgbImage, clip: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let y: Vec<u8> = img.pixels().map(luma).collect();

    let mut hist = [0u32; 256];
    for &v in &y {
        hist[usize::from(v)] += 1;
    }
    let lo = percentile(&hist, 0.01) as f32;
    let hi = percentile(&hist, 0.99) as f32;
    let mut stretch = [0u8; 256];
    for (v, slot) in stretch.iter_mut().enumerate() {
        *slot = if hi - lo < 8.0 {
            // Nearly uniform: stretching would turn noise into contrast.
            v as u8
        } else {
            ((v as f32 - lo) * 255.0 / (hi - lo))
                .round()
                .clamp(0.0, 255.0) as u8
        };
    }
    let stretched: Vec<u8> = y.iter().map(|&v| stretch[usize::from(v)]).collect();
    let equalised = clahe(&stretched, w, h, clip);

    // Gain Y′/Y for every (Y, Y′) pair in 8.8 fixed point: 128 KiB, so the per-pixel work is one
    // lookup and three integer multiplies.
    let mut gains = vec![0u16; 256 * 256];
    for before in 1..256usize {
        for after in 0..256usize {
            let g = (after as f32 / before as f32).min(MAX_LUMA_GAIN);
            gains[before * 256 + after] = (g * 256.0).round() as u16;
        }
    }
    for ((p, &before), &after) in img.pixels_mut().zip(&y).zip(&equalised) {
        if before == 0 {
            // No ratio to apply: lift black to the new grey level.
            *p = Rgb([after; 3]);
            continue;
        }
        let g = u32::from(gains[usize::from(before) * 256 + usize::from(after)]);
        for c in p.0.iter_mut() {
            *c = ((u32::from(*c) * g + 128) >> 8).min(255) as u8;
        }
    }
}

/// Contrast-limited adaptive histogram equalisation of a grey buffer: one clipped-histogram lookup
/// table per tile, blended bilinearly between the four nearest tile centres (no tile seams).
fn clahe(y: &[u8], w: usize, h: usize, clip: f32) -> Vec<u8> {
    // Tiles of at least 16 px so each histogram has enough samples.
    let tiles_x = CLAHE_TILES.min(w / 16).max(1);
    let tiles_y = CLAHE_TILES.min(h / 16).max(1);
    let tile_w = w.div_ceil(tiles_x);
    let tile_h = h.div_ceil(tiles_y);

    let mut hists = vec![[0u32; 256]; tiles_x * tiles_y];
    for (row_idx, row) in y.chunks_exact(w).enumerate() {
        let ty = (row_idx / tile_h).min(tiles_y - 1);
        for (x, &v) in row.iter().enumerate() {
            let tx = (x / tile_w).min(tiles_x - 1);
            hists[ty * tiles_x + tx][usize::from(v)] += 1;
        }
    }
    // Lookup tables in fixed point (grey level × 64) and 7-bit interpolation weights: the
    // per-pixel blend is integer arithmetic on four table entries.
    let luts: Vec<[u32; 256]> = hists
        .iter()
        .map(|hist| clipped_lut(hist, clip).map(|v| (v * 64.0).round() as u32))
        .collect();

    // Interpolation coordinates per column and per row, relative to the tile centres.
    let axis = |len: usize, tile: usize, tiles: usize| -> Vec<(usize, usize, u32)> {
        (0..len)
            .map(|i| {
                let f = ((i as f32 + 0.5) / tile as f32 - 0.5).clamp(0.0, (tiles - 1) as f32);
                let i0 = f.floor() as usize;
                let i1 = (i0 + 1).min(tiles - 1);
                (i0, i1, ((f - i0 as f32) * 128.0).round() as u32)
            })
            .collect()
    };
    let cols = axis(w, tile_w, tiles_x);
    let rows = axis(h, tile_h, tiles_y);

    let mut out = Vec::with_capacity(y.len());
    for (row, &(y0, y1, wy)) in y.chunks_exact(w).zip(&rows) {
        let (top_luts, bottom_luts) = (&luts[y0 * tiles_x..], &luts[y1 * tiles_x..]);
        for (&v, &(x0, x1, wx)) in row.iter().zip(&cols) {
            let v = usize::from(v);
            let top = top_luts[x0][v] * (128 - wx) + top_luts[x1][v] * wx;
            let bottom = bottom_luts[x0][v] * (128 - wx) + bottom_luts[x1][v] * wx;
            // 64 × 128 × 128 = 2^20; the sum stays below 2^32 (255 × 2^20).
            let blended = (top * (128 - wy) + bottom * wy + (1 << 19)) >> 20;
            out.push(blended.min(255) as u8);
        }
    }
    out
}

/// Equalisation lookup table of one tile, its histogram clipped at `clip` × the mean bin count and
/// the excess spread evenly over all bins (which bounds the slope, hence the noise amplification).
fn clipped_lut(hist: &[u32; 256], clip: f32) -> [f32; 256] {
    let total: u32 = hist.iter().sum();
    let mut lut = [0f32; 256];
    if total == 0 {
        for (v, slot) in lut.iter_mut().enumerate() {
            *slot = v as f32;
        }
        return lut;
    }
    let limit = (clip * total as f32 / 256.0).max(1.0);
    let mut clipped = [0f32; 256];
    let mut excess = 0f32;
    for (c, &n) in clipped.iter_mut().zip(hist) {
        let n = n as f32;
        *c = n.min(limit);
        excess += n - *c;
    }
    let bonus = excess / 256.0;
    let mut cdf = 0f32;
    for (slot, c) in lut.iter_mut().zip(&clipped) {
        cdf += c + bonus;
        *slot = 255.0 * cdf / total as f32;
    }
    lut
}

/// Exact 3 × 3 median of each channel, edges replicated. Each column of three rows is sorted
/// once into (low, middle, high); the median of the nine is then the median of the largest low,
/// the middle middle and the smallest high of three neighbouring columns (Paeth). Only byte
/// minima and maxima over whole rows, which the compiler vectorises: ~60× faster here than
/// `imageproc::filter::median_filter` (a generic sliding histogram, about 3 s on 12 MP).
fn median3x3(img: &RgbImage) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let stride = w * 3;
    let raw = img.as_raw();
    let mut out = vec![0u8; raw.len()];
    let (mut lo, mut mid, mut hi) = (vec![0u8; stride], vec![0u8; stride], vec![0u8; stride]);
    let row = |y: usize| &raw[y * stride..(y + 1) * stride];
    // Median of three values.
    let med3 = |p: u8, q: u8, r: u8| p.min(q).max(p.max(q).min(r));
    for y in 0..h {
        let (a, b, c) = (row(y.saturating_sub(1)), row(y), row((y + 1).min(h - 1)));
        for ((((l, m), hh), (&p, &q)), &r) in lo
            .iter_mut()
            .zip(mid.iter_mut())
            .zip(hi.iter_mut())
            .zip(a.iter().zip(b))
            .zip(c)
        {
            *l = p.min(q).min(r);
            *hh = p.max(q).max(r);
            *m = med3(p, q, r);
        }
        let dst = &mut out[y * stride..(y + 1) * stride];
        // Neighbouring pixels are 3 bytes away; the edge pixels repeat themselves.
        let at = |i: usize| {
            let l = if i >= 3 { i - 3 } else { i };
            let r = if i + 3 < stride { i + 3 } else { i };
            let low = lo[l].max(lo[i]).max(lo[r]);
            let high = hi[l].min(hi[i]).min(hi[r]);
            med3(low, med3(mid[l], mid[i], mid[r]), high)
        };
        if stride <= 6 {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = at(i);
            }
            continue;
        }
        for i in (0..3).chain(stride - 3..stride) {
            dst[i] = at(i);
        }
        // Interior: nine equal-length slices, no branches, so the loop vectorises.
        let n = stride - 6;
        let (lo_l, lo_c, lo_r) = (&lo[..n], &lo[3..3 + n], &lo[6..6 + n]);
        let (mi_l, mi_c, mi_r) = (&mid[..n], &mid[3..3 + n], &mid[6..6 + n]);
        let (hi_l, hi_c, hi_r) = (&hi[..n], &hi[3..3 + n], &hi[6..6 + n]);
        for (i, d) in dst[3..3 + n].iter_mut().enumerate() {
            let low = lo_l[i].max(lo_c[i]).max(lo_r[i]);
            let high = hi_l[i].min(hi_c[i]).min(hi_r[i]);
            *d = med3(low, med3(mi_l[i], mi_c[i], mi_r[i]), high);
        }
    }
    RgbImage::from_raw(w as u32, h as u32, out).unwrap_or_else(|| img.clone())
}

/// Rotates `img` clockwise by `theta` radians about its centre, bilinear, `fill` outside: the
/// same result as `imageproc::geometric_transformations::rotate_about_center` (checked in the
/// tests), but stepping through the source in 16.16 fixed point along each output row instead of
/// applying a projective transform in floating point per pixel, which cost ~0.5 s on 12 MP.
fn rotate_bilinear(img: &RgbImage, theta: f32, fill: Rgb<u8>) -> RgbImage {
    let (w, h) = (img.width(), img.height());
    let (s, c) = f64::from(theta).sin_cos();
    let (cx, cy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    const ONE: f64 = 65_536.0;
    let raw = img.as_raw();
    let stride = w as usize * 3;
    let mut out = RgbImage::from_pixel(w, h, fill);
    for (y, out_row) in out.rows_mut().enumerate() {
        // Source of output pixel (x, y): the inverse rotation, R(−θ), about the centre.
        let dy = y as f64 - cy;
        let mut sx = ((cx + c * -cx + s * dy) * ONE) as i64;
        let mut sy = ((cy - s * -cx + c * dy) * ONE) as i64;
        let (step_x, step_y) = ((c * ONE) as i64, (-s * ONE) as i64);
        for p in out_row {
            let (ix, iy) = (sx >> 16, sy >> 16);
            if ix >= 0 && iy >= 0 && ix + 1 < i64::from(w) && iy + 1 < i64::from(h) {
                let fx = ((sx >> 8) & 0xFF) as u32;
                let fy = ((sy >> 8) & 0xFF) as u32;
                let base = iy as usize * stride + ix as usize * 3;
                for k in 0..3 {
                    let tl = u32::from(raw[base + k]);
                    let tr = u32::from(raw[base + 3 + k]);
                    let bl = u32::from(raw[base + stride + k]);
                    let br = u32::from(raw[base + stride + 3 + k]);
                    let top = tl * (256 - fx) + tr * fx;
                    let bottom = bl * (256 - fx) + br * fx;
                    p.0[k] = ((top * (256 - fy) + bottom * fy + 32_768) >> 16) as u8;
                }
            }
            sx += step_x;
            sy += step_y;
        }
    }
    out
}

/// Skew of the text lines, in degrees clockwise, or `None` when there is no clear text-line
/// structure or the skew is too small to be worth a resampling.
fn measure_skew(img: &RgbImage) -> Option<f32> {
    let plane = GreyPlane::downscaled(img, DESKEW_MAX_SIDE);
    let (w, h) = (plane.width, plane.height);
    if w < 32 || h < 32 {
        return None;
    }
    let grey = GrayImage::from_fn(w as u32, h as u32, |x, y| {
        let v = plane.data[y as usize * w + x as usize];
        image::Luma([v.round().clamp(0.0, 255.0) as u8])
    });
    let level = imageproc::contrast::otsu_level(&grey);

    // Ink coordinates relative to the centre. Skip a 2 % border, where a page edge or the table
    // under it would dominate the profile.
    let (mx, my) = (w / 50, h / 50);
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let mut ink: Vec<(f32, f32)> = Vec::new();
    for y in my..h - my {
        for x in mx..w - mx {
            if grey.get_pixel(x as u32, y as u32).0[0] < level {
                ink.push((x as f32 - cx, y as f32 - cy));
            }
        }
    }
    let area = ((w - 2 * mx) * (h - 2 * my)) as f32;
    let coverage = ink.len() as f32 / area;
    // Text covers a few percent to a third of a page; outside that it is not a text page.
    if !(0.002..=0.4).contains(&coverage) {
        return None;
    }
    // Cap the work: 100,000 points are ample for a profile.
    let step = ink.len().div_ceil(100_000).max(1);
    let ink: Vec<(f32, f32)> = ink.into_iter().step_by(step).collect();

    let diag = ((w * w + h * h) as f32).sqrt();
    let bins = diag.ceil() as usize + 2;
    let mut profile = vec![0u32; bins];
    let mut energy = |deg: f32| -> f64 {
        let (s, c) = deg.to_radians().sin_cos();
        profile.iter_mut().for_each(|b| *b = 0);
        for &(x, y) in &ink {
            // Coordinate across the lines if the page is turned `deg` clockwise.
            let across = y * c - x * s + diag / 2.0;
            let bin = (across.max(0.0) as usize).min(bins - 1);
            profile[bin] += 1;
        }
        profile.iter().map(|&n| f64::from(n) * f64::from(n)).sum()
    };

    let coarse: Vec<(f32, f64)> = (0..=((2.0 * DESKEW_RANGE / 0.5) as i32))
        .map(|i| {
            let deg = -DESKEW_RANGE + 0.5 * i as f32;
            (deg, energy(deg))
        })
        .collect();
    let mean_energy = coarse.iter().map(|(_, e)| e).sum::<f64>() / coarse.len() as f64;
    let (mut best_deg, mut best) = coarse
        .iter()
        .copied()
        .fold((0.0, f64::MIN), |acc, c| if c.1 > acc.1 { c } else { acc });
    // Text lines give one sharp maximum; without them every angle looks alike.
    if best < 1.3 * mean_energy {
        return None;
    }
    let centre = best_deg;
    for i in -5..=5 {
        let deg = centre + 0.1 * i as f32;
        let e = energy(deg);
        if e > best {
            (best_deg, best) = (deg, e);
        }
    }
    (best_deg.abs() >= DESKEW_MIN).then_some(best_deg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::assess;
    use imageproc::geometric_transformations::{Interpolation, rotate_about_center};

    /// A deterministic "noisy photo": a gradient plus pseudo-random grain.
    fn grainy(w: u32, h: u32) -> RgbImage {
        let mut state = 0x2545_f491_u32;
        RgbImage::from_fn(w, h, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let n = (state % 61) as i32 - 30;
            let v = |base: u32| (base as i32 + n).clamp(0, 255) as u8;
            Rgb([v(x % 256), v(y % 256), v((x + y) % 256)])
        })
    }

    #[test]
    fn median_matches_imageproc() {
        let img = grainy(97, 61);
        assert_eq!(
            median3x3(&img),
            imageproc::filter::median_filter(&img, 1, 1)
        );
    }

    #[test]
    fn rotation_matches_imageproc() {
        let img = grainy(120, 90);
        for deg in [-7.0f32, 0.0, 3.5] {
            let ours = rotate_bilinear(&img, deg.to_radians(), Rgb([255, 255, 255]));
            let theirs = rotate_about_center(
                &img,
                deg.to_radians(),
                Interpolation::Bilinear,
                Rgb([255, 255, 255]),
            );
            // Interior only: at the very edge the two may disagree on which pixels are "outside".
            let mut total = 0u64;
            let mut n = 0u64;
            for y in 8..82 {
                for x in 8..112 {
                    for k in 0..3 {
                        total += u64::from(
                            ours.get_pixel(x, y).0[k].abs_diff(theirs.get_pixel(x, y).0[k]),
                        );
                        n += 1;
                    }
                }
            }
            assert!(
                total as f64 / (n as f64) < 1.0,
                "{deg}°: mean diff {}",
                total as f64 / n as f64
            );
        }
    }

    /// A white page with dark "text lines": rows of word-like blocks.
    fn text_page(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let line = (y / 24) % 2 == 1 && y > 60 && y < h - 60;
            let in_line_band = (y % 24) >= 6 && (y % 24) < 16;
            let word = ((x / 37) % 5) != 4 && x > 60 && x < w - 60;
            if line && in_line_band && word {
                Rgb([20, 20, 20])
            } else {
                Rgb([245, 245, 245])
            }
        })
    }

    fn good_report() -> QualityReport {
        QualityReport {
            score: 0.7,
            sharpness: 0.5,
            exposure: 1.0,
            contrast: 1.0,
            noise: 1.0,
            resolution: 1.0,
            flat_fill: 0.0,
        }
    }

    #[test]
    fn deskew_recovers_a_four_degree_skew() {
        let page = text_page(1200, 1600);
        let skewed = rotate_about_center(
            &page,
            4f32.to_radians(),
            Interpolation::Bilinear,
            Rgb([245, 245, 245]),
        );
        let (_, report) = enhance(&skewed, DocumentKind::Document, &good_report());
        assert!(report.applied.contains(&"deskew"), "{report:?}");
        assert!(
            (report.deskew_degrees + 4.0).abs() <= 1.0,
            "deskew {} for a 4° clockwise skew",
            report.deskew_degrees
        );
    }

    #[test]
    fn straight_page_and_photos_are_not_rotated() {
        let page = text_page(800, 1000);
        let (_, report) = enhance(&page, DocumentKind::Document, &good_report());
        assert!(!report.applied.contains(&"deskew"), "{report:?}");
        let skewed = rotate_about_center(
            &page,
            4f32.to_radians(),
            Interpolation::Bilinear,
            Rgb([245, 245, 245]),
        );
        let (_, report) = enhance(&skewed, DocumentKind::Photo, &good_report());
        assert!(!report.applied.contains(&"deskew"), "{report:?}");
    }

    #[test]
    fn contrast_normalisation_raises_the_contrast_score() {
        // A smooth gradient with detail, squeezed into 100..140.
        let img = RgbImage::from_fn(400, 300, |x, y| {
            let v = 100.0 + 40.0 * (x as f32 / 400.0) + 5.0 * ((x / 7 + y / 9) % 2) as f32;
            Rgb([v as u8; 3])
        });
        let before = assess(&img, 200, 150);
        assert!(before.contrast < CONTRAST_BELOW, "{before:?}");
        let (out, report) = enhance(&img, DocumentKind::Photo, &before);
        assert!(report.applied.contains(&"contrast"), "{report:?}");
        let after = assess(&out, 200, 150);
        assert!(
            after.contrast > before.contrast + 0.3,
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn white_balance_removes_a_colour_cast() {
        // Neutral scene (greys and a white area) under a warm light: blue at 75 %, red at 110 %.
        let neutral = RgbImage::from_fn(300, 300, |x, y| {
            let v = if y < 60 {
                235
            } else {
                60 + ((x + y) % 150) as u8
            };
            Rgb([v, v, v])
        });
        let cast = RgbImage::from_fn(300, 300, |x, y| {
            let v = f32::from(neutral.get_pixel(x, y).0[0]);
            Rgb([(v * 1.05).min(255.0) as u8, v as u8, (v * 0.75) as u8])
        });
        let q = assess(&cast, 100, 100);
        let (out, report) = enhance(&cast, DocumentKind::Photo, &q);
        assert!(report.applied.contains(&"white_balance"), "{report:?}");
        let mean = |img: &RgbImage, k: usize| {
            img.pixels().map(|p| f64::from(p.0[k])).sum::<f64>()
                / f64::from(img.width() * img.height())
        };
        let (r, g, b) = (mean(&out, 0), mean(&out, 1), mean(&out, 2));
        assert!(
            (r / g - 1.0).abs() < 0.03 && (b / g - 1.0).abs() < 0.03,
            "{r} {g} {b}"
        );
        // A neutral image is left alone.
        let (same, report) = enhance(&neutral, DocumentKind::Photo, &assess(&neutral, 100, 100));
        assert!(!report.applied.contains(&"white_balance"), "{report:?}");
        assert_eq!(same, neutral);
    }

    #[test]
    fn denoise_only_when_noise_is_measured() {
        let img = text_page(200, 200);
        let mut noisy_report = good_report();
        noisy_report.noise = 0.2;
        let (_, report) = enhance(&img, DocumentKind::Signature, &noisy_report);
        assert_eq!(report.applied, vec!["denoise"]);
        let (_, report) = enhance(&img, DocumentKind::Signature, &good_report());
        assert!(report.applied.is_empty());
    }

    #[test]
    fn clean_photo_changes_little() {
        let path = format!(
            "{}/tests/fixtures/photos/astronaut.jpg",
            env!("CARGO_MANIFEST_DIR")
        );
        let img = image::open(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .to_rgb8();
        let q = assess(&img, 200, 230);
        for kind in [
            DocumentKind::Photo,
            DocumentKind::Document,
            DocumentKind::Signature,
        ] {
            let (out, report) = enhance(&img, kind, &q);
            let diff: f64 = out
                .as_raw()
                .iter()
                .zip(img.as_raw())
                .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                .sum::<f64>()
                / img.as_raw().len() as f64;
            assert!(diff < 1.0, "{kind:?}: mean abs diff {diff}, {report:?}");
        }
    }

    #[test]
    fn dark_photo_is_brightened() {
        let path = format!(
            "{}/tests/fixtures/photos/coffee.jpg",
            env!("CARGO_MANIFEST_DIR")
        );
        let clean = image::open(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .to_rgb8();
        let mut dark = clean.clone();
        for p in dark.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = (f32::from(*c) * 0.3).round() as u8;
            }
        }
        let before = assess(&dark, 200, 230);
        let (out, report) = enhance(&dark, DocumentKind::Photo, &before);
        assert!(report.applied.contains(&"contrast"), "{report:?}");
        let after = assess(&out, 200, 230);
        assert!(
            after.exposure > before.exposure + 0.3,
            "{before:?} -> {after:?}"
        );
        assert!(after.score > before.score, "{before:?} -> {after:?}");
    }

    #[test]
    fn tiny_images_pass_through() {
        let img = RgbImage::new(3, 3);
        let (out, report) = enhance(&img, DocumentKind::Document, &good_report());
        assert_eq!(out, img);
        assert!(report.applied.is_empty());
    }
}
