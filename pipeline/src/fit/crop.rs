//! Where a photo's crop window goes: around its subject (saliency on a coarse grid).

use image::RgbImage;

/// Saliency of a skin-coloured cell: three times the most an edge or a colour contrast can give,
/// so a face outweighs a detailed background (a flag, a shelf) of the same size.
pub(super) const SKIN_WEIGHT: f64 = 3.0;

/// Long side of the grid the subject is looked for on: coarse is enough to place a crop window.
pub(super) const SALIENCY_GRID: u32 = 96;

/// Share of the window height kept free above the top of the subject (a portrait's headroom).
pub(super) const HEADROOM: f64 = 0.10;

/// A row or column counts as subject when its saliency reaches this share of the strongest one.
pub(super) const SUBJECT_LEVEL: f64 = 0.30;

/// Where to put a `cw`×`ch` crop window (one side of which is the image's full side) so that it
/// keeps the photo's subject: `(x, y)`, or `None` when nothing stands out (the caller centres).
///
/// Saliency is measured on a grid of at most [`SALIENCY_GRID`] cells on the long side (box means
/// of the image), each cell scoring the sum of
/// - its edge energy (|∇ luma| to the right and below neighbours), normalised by the 95th
///   percentile over the grid: detail is where the subject is;
/// - its colour distance from the background, taken as the median colour of the grid's border
///   cells, normalised the same way: portrait photos are shot against a wall or a backdrop;
/// - [`SKIN_WEIGHT`] for a skin-coloured cell (YCbCr, Cb 77–127, Cr 133–173, the classic
///   Chai–Ngan box): faces.
///
/// Each row (or column) sums its cells; the median is subtracted so that uniform texture counts
/// for nothing. Horizontally the window is centred on the saliency centroid. Vertically, the top
/// of the subject (the first row reaching [`SUBJECT_LEVEL`] of the strongest) is placed
/// [`HEADROOM`] of the window height below the window's top: the head keeps room above it and
/// the crop takes from the bottom, as a passport photo is framed. A window always stays inside
/// the image.
pub(super) fn subject_crop(img: &RgbImage, cw: u32, ch: u32) -> Option<(u32, u32)> {
    let (w, h) = img.dimensions();
    if (cw < w && ch < h) || cw > w || ch > h {
        return None;
    }
    let grid = SaliencyGrid::new(img)?;
    let saliency = grid.saliency();
    let (gw, gh) = (grid.width, grid.height);
    let horizontal = cw < w;
    let profile: Vec<f64> = if horizontal {
        (0..gw)
            .map(|x| (0..gh).map(|y| saliency[y * gw + x]).sum())
            .collect()
    } else {
        saliency
            .chunks_exact(gw)
            .map(|row| row.iter().sum())
            .collect()
    };
    let mut sorted = profile.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let excess: Vec<f64> = profile.iter().map(|p| (p - median).max(0.0)).collect();
    let total: f64 = excess.iter().sum();
    let peak = excess.iter().copied().fold(0.0, f64::max);
    if total <= f64::EPSILON || peak <= f64::EPSILON {
        return None;
    }
    // Grid cell → image pixels along the free axis.
    let (len, window, cells) = if horizontal { (w, cw, gw) } else { (h, ch, gh) };
    let scale = f64::from(len) / cells as f64;
    let start = if horizontal {
        let centroid = excess
            .iter()
            .enumerate()
            .map(|(i, e)| (i as f64 + 0.5) * e)
            .sum::<f64>()
            / total;
        centroid * scale - f64::from(window) / 2.0
    } else {
        let top = excess.iter().position(|&e| e >= SUBJECT_LEVEL * peak)?;
        top as f64 * scale - HEADROOM * f64::from(window)
    };
    let slack = f64::from(len - window);
    // In 0..=slack, so the cast cannot overflow.
    let start = start.round().clamp(0.0, slack) as u32;
    Some(if horizontal { (start, 0) } else { (0, start) })
}

/// Box means of an image on a coarse grid (RGB, as f64).
pub(super) struct SaliencyGrid {
    width: usize,
    height: usize,
    cells: Vec<[f64; 3]>,
}

impl SaliencyGrid {
    fn new(img: &RgbImage) -> Option<Self> {
        let (w, h) = img.dimensions();
        let step = w.max(h).div_ceil(SALIENCY_GRID).max(1);
        let (gw, gh) = (
            usize::try_from(w / step).ok()?,
            usize::try_from(h / step).ok()?,
        );
        if gw < 3 || gh < 3 {
            return None;
        }
        let step_us = usize::try_from(step).ok()?;
        let mut sums = vec![[0u32; 3]; gw * gh];
        for (y, row) in img.rows().enumerate().take(gh * step_us) {
            let gy = y / step_us;
            for (x, px) in row.enumerate().take(gw * step_us) {
                let cell = &mut sums[gy * gw + x / step_us];
                for (acc, v) in cell.iter_mut().zip(px.0) {
                    *acc += u32::from(v);
                }
            }
        }
        let n = f64::from(step * step);
        let cells = sums
            .iter()
            .map(|s| {
                [
                    f64::from(s[0]) / n,
                    f64::from(s[1]) / n,
                    f64::from(s[2]) / n,
                ]
            })
            .collect();
        Some(SaliencyGrid {
            width: gw,
            height: gh,
            cells,
        })
    }

    /// Per-cell saliency: normalised edge energy + normalised distance from the background colour
    /// + 1 for skin (see [`subject_crop`]).
    fn saliency(&self) -> Vec<f64> {
        let (gw, gh) = (self.width, self.height);
        let luma = |c: &[f64; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        let l: Vec<f64> = self.cells.iter().map(luma).collect();
        let edges: Vec<f64> = (0..gw * gh)
            .map(|i| {
                let (x, y) = (i % gw, i / gw);
                let right = if x + 1 < gw {
                    (l[i + 1] - l[i]).abs()
                } else {
                    0.0
                };
                let below = if y + 1 < gh {
                    (l[i + gw] - l[i]).abs()
                } else {
                    0.0
                };
                right + below
            })
            .collect();
        // Background: per-channel median of the border cells.
        let border: Vec<&[f64; 3]> = self
            .cells
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                let (x, y) = (i % gw, i / gw);
                x == 0 || y == 0 || x + 1 == gw || y + 1 == gh
            })
            .map(|(_, c)| c)
            .collect();
        let background: [f64; 3] = std::array::from_fn(|ch| {
            let mut v: Vec<f64> = border.iter().map(|c| c[ch]).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        });
        let distance: Vec<f64> = self
            .cells
            .iter()
            .map(|c| {
                let d: f64 = (0..3).map(|ch| (c[ch] - background[ch]).powi(2)).sum();
                d.sqrt()
            })
            .collect();
        let normalise = |v: &[f64]| -> Vec<f64> {
            let mut sorted = v.to_vec();
            sorted.sort_by(f64::total_cmp);
            let p95 = sorted[sorted.len() * 95 / 100].max(1.0);
            v.iter().map(|x| (x / p95).min(1.0)).collect()
        };
        let (edges, distance) = (normalise(&edges), normalise(&distance));
        self.cells
            .iter()
            .zip(edges.iter().zip(&distance))
            .map(|(c, (e, d))| {
                let cb = 128.0 - 0.168_736 * c[0] - 0.331_264 * c[1] + 0.5 * c[2];
                let cr = 128.0 + 0.5 * c[0] - 0.418_688 * c[1] - 0.081_312 * c[2];
                let skin = (77.0..=127.0).contains(&cb) && (133.0..=173.0).contains(&cr);
                e + d + if skin { SKIN_WEIGHT } else { 0.0 }
            })
            .collect()
    }
}
