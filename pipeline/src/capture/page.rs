//! Finding the page in a photograph: its four corners.
//!
//! The classic contour-and-warp scanner (threshold, largest contour, polygon approximation),
//! on a "paper" score rather than grey: paper is bright and nearly colourless even in a hand's
//! shadow, while desks, wood and fabric are darker or coloured. Work is done on a thumbnail of
//! [`WORK_SIDE`] pixels, then the corners are scaled back.

use image::{GrayImage, Luma, RgbImage};
use imageproc::contours::{BorderType, find_contours};
use imageproc::distance_transform::Norm;
use imageproc::geometry::{approximate_polygon_dp, arc_length, convex_hull};
use imageproc::point::Point;

/// Corners `[x, y]` in image pixels: top-left, top-right, bottom-right, bottom-left.
pub type Quad = [[f32; 2]; 4];

/// Longer side of the thumbnail the page is looked for in: corners land within
/// `long side / WORK_SIDE` pixels (3 px on a 12 MP frame) at a few milliseconds' cost.
const WORK_SIDE: u32 = 1200;

/// Paper scores at least this on average, even in a hand's shadow (white paper at half the
/// light scores ~110; wood, cardboard and skin score under 60).
const MIN_PAPER: f64 = 90.0;

/// What the page search found.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// A page with a background around it.
    Page {
        corners: Quad,
        /// Some corner lies on the frame's edge: part of the page may be outside the photo.
        cut_off: bool,
    },
    /// The page fills the frame (a scan, or a photo cropped to the page).
    WholeFrame,
    /// No page edge stands out from the background.
    NoEdge,
}

/// Finds the page in `img`.
pub fn find(img: &RgbImage) -> Found {
    let (w, h) = img.dimensions();
    let scale = (WORK_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (tw, th) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    let small = image::imageops::thumbnail(img, tw, th);
    let paper = paper_score(&small);
    let level = split_level(&paper);
    // Any histogram splits in two; the split only means "paper vs background" when the
    // bright side looks like paper and the two sides differ clearly.
    let (mut lo, mut hi, mut nlo, mut nhi) = (0f64, 0f64, 0f64, 0f64);
    for p in paper.pixels() {
        if p[0] > level {
            hi += f64::from(p[0]);
            nhi += 1.0;
        } else {
            lo += f64::from(p[0]);
            nlo += 1.0;
        }
    }
    let frame_area = f64::from(tw) * f64::from(th);
    if nhi < 1.0 {
        // One level all over: a blank sheet, or a bare desk.
        let mean = lo / nlo.max(1.0);
        return if mean >= MIN_PAPER {
            Found::WholeFrame
        } else {
            Found::NoEdge
        };
    }
    let paper_mean = hi / nhi;
    if paper_mean < MIN_PAPER {
        return Found::NoEdge;
    }
    // Nearly everything is paper: the page is the frame.
    if nhi / frame_area > 0.92 || nlo < 1.0 {
        return Found::WholeFrame;
    }
    if paper_mean - lo / nlo < 40.0 {
        return Found::NoEdge;
    }
    // The page's outline is traced at a quarter of the way from the background's mean to the
    // paper's, not at the split: a hand's shadow can halve the paper's score (white paper under
    // a 60 % shadow scores ~70), while desks stay near the background's mean.
    let edge = lo / nlo + 0.25 * (paper_mean - lo / nlo);
    // One pixel of background all round, so that a page touching the frame still has a
    // closed outline for the border following; coordinates are shifted back below.
    let mut mask = GrayImage::from_fn(tw + 2, th + 2, |x, y| {
        let inside = x >= 1 && y >= 1 && x <= tw && y <= th;
        Luma([
            if inside && f64::from(paper.get_pixel(x - 1, y - 1)[0]) > edge {
                255
            } else {
                0
            },
        ])
    });
    // Open away specks and thin bright grain so they do not join the page's outline.
    imageproc::morphology::open_mut(&mut mask, Norm::LInf, 2);
    let contours = find_contours::<i32>(&mask);
    let Some(outline) = contours
        .iter()
        .filter(|c| c.border_type == BorderType::Outer && c.points.len() >= 3)
        .map(|c| convex_hull(c.points.clone()))
        .max_by(|a, b| polygon_area(a).total_cmp(&polygon_area(b)))
    else {
        return Found::NoEdge;
    };
    let area = polygon_area(&outline);
    if area / frame_area > 0.92 {
        return Found::WholeFrame;
    }
    // A page this small is a label or a reflection, not the document.
    if area / frame_area < 0.1 {
        return Found::NoEdge;
    }
    let Some(quad) = quadrilateral(&outline) else {
        return Found::NoEdge;
    };
    // The quad must account for the outline: a blob that is not four-sided is not a page.
    if (polygon_area_f(&quad) - area).abs() / area > 0.08 {
        return Found::NoEdge;
    }
    let margin = 2.0;
    let cut_off = quad.iter().any(|[x, y]| {
        *x <= 1.0 + margin
            || *y <= 1.0 + margin
            || *x >= tw as f32 - margin
            || *y >= th as f32 - margin
    });
    // Pixel centres of the thumbnail back to the frame.
    let (sx, sy) = (w as f32 / tw as f32, h as f32 / th as f32);
    let corners = quad.map(|[x, y]| [(x - 0.5) * sx, (y - 0.5) * sy]);
    Found::Page { corners, cut_off }
}

/// The level between the dark and the bright pixels (Ridler and Calvard's iterative intermeans:
/// the midpoint of the two classes' means, repeated until it settles).
fn split_level(img: &GrayImage) -> u8 {
    let mut hist = [0u64; 256];
    for p in img.pixels() {
        hist[usize::from(p[0])] += 1;
    }
    let mean = |range: std::ops::Range<usize>| {
        let (mut n, mut sum) = (0u64, 0u64);
        for v in range {
            n += hist[v];
            sum += hist[v] * v as u64;
        }
        (n > 0).then(|| sum as f64 / n as f64)
    };
    let mut level = mean(0..256).unwrap_or(0.0) as usize;
    for _ in 0..32 {
        let (Some(lo), Some(hi)) = (mean(0..level + 1), mean(level + 1..256)) else {
            break;
        };
        let next = ((lo + hi) / 2.0) as usize;
        if next == level {
            break;
        }
        level = next;
    }
    level.min(255) as u8
}

/// How much each pixel looks like paper: bright and colourless score high, so a shadowed corner
/// of white paper still beats brown wood of the same brightness.
fn paper_score(img: &RgbImage) -> GrayImage {
    GrayImage::from_fn(img.width(), img.height(), |x, y| {
        let [r, g, b] = img.get_pixel(x, y).0.map(i32::from);
        let (lo, hi) = (r.min(g).min(b), r.max(g).max(b));
        Luma([(lo - (hi - lo) / 2).clamp(0, 255) as u8])
    })
}

/// The hull simplified to four corners (Douglas–Peucker with a growing tolerance), in the
/// order top-left, top-right, bottom-right, bottom-left.
fn quadrilateral(hull: &[Point<i32>]) -> Option<Quad> {
    if hull.len() < 4 {
        return None;
    }
    // imageproc's Douglas–Peucker runs from the first point to the last: split the closed hull
    // into two chains between opposite extremes (top-left and bottom-right), which are corners
    // of any page, and simplify each.
    let key = |p: &Point<i32>| p.x + p.y;
    let (tl, _) = hull.iter().enumerate().min_by_key(|(_, p)| key(p))?;
    let (br, _) = hull.iter().enumerate().max_by_key(|(_, p)| key(p))?;
    let n = hull.len();
    let chain = |from: usize, to: usize| -> Vec<Point<i32>> {
        let len = (to + n - from) % n;
        (0..=len).map(|i| hull[(from + i) % n]).collect()
    };
    let (first, second) = (chain(tl, br), chain(br, tl));
    let perimeter = arc_length(hull, true);
    let four = (1..=20)
        .find_map(|k| {
            let eps = perimeter * 0.005 * f64::from(k);
            let mut poly = approximate_polygon_dp(&first, eps, false);
            poly.pop();
            let mut rest = approximate_polygon_dp(&second, eps, false);
            rest.pop();
            poly.extend(rest);
            (poly.len() == 4).then_some(poly)
        })
        // No tolerance gives four corners: the hull's extremes in the diagonal directions
        // (the caller checks that they cover the outline).
        .unwrap_or_else(|| hull.to_vec());
    let pts: Vec<[f32; 2]> = four.iter().map(|p| [p.x as f32, p.y as f32]).collect();
    Some(order(&pts))
}

/// Top-left has the smallest x + y, bottom-right the largest; top-right the largest x − y,
/// bottom-left the smallest (pages are tilted well under 45°).
fn order(pts: &[[f32; 2]]) -> Quad {
    let by = |f: &dyn Fn(&[f32; 2]) -> f32, max: bool| {
        let it = pts.iter().copied();
        let pick = if max {
            it.max_by(|a, b| f(a).total_cmp(&f(b)))
        } else {
            it.min_by(|a, b| f(a).total_cmp(&f(b)))
        };
        pick.unwrap_or([0.0, 0.0])
    };
    let sum = |p: &[f32; 2]| p[0] + p[1];
    let diff = |p: &[f32; 2]| p[0] - p[1];
    [
        by(&sum, false),
        by(&diff, true),
        by(&sum, true),
        by(&diff, false),
    ]
}

fn polygon_area(pts: &[Point<i32>]) -> f64 {
    let n = pts.len();
    let twice: i64 = (0..n)
        .map(|i| {
            let (a, b) = (pts[i], pts[(i + 1) % n]);
            i64::from(a.x) * i64::from(b.y) - i64::from(b.x) * i64::from(a.y)
        })
        .sum();
    (twice as f64 / 2.0).abs()
}

/// Area of a quad (shoelace).
pub fn polygon_area_f(q: &Quad) -> f64 {
    let twice: f64 = (0..4)
        .map(|i| {
            let (a, b) = (q[i], q[(i + 1) % 4]);
            f64::from(a[0]) * f64::from(b[1]) - f64::from(b[0]) * f64::from(a[1])
        })
        .sum();
    (twice / 2.0).abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn a_white_sheet_on_a_dark_desk_is_found() {
        let img = RgbImage::from_fn(800, 600, |x, y| {
            if (200..600).contains(&x) && (100..500).contains(&y) {
                Rgb([235, 230, 220])
            } else {
                Rgb([110, 70, 40])
            }
        });
        let Found::Page { corners, cut_off } = find(&img) else {
            panic!("no page found");
        };
        assert!(!cut_off);
        let truth = [
            [200.0, 100.0],
            [600.0, 100.0],
            [600.0, 500.0],
            [200.0, 500.0],
        ];
        for (c, t) in corners.iter().zip(truth) {
            assert!(
                (c[0] - t[0]).abs() < 3.0 && (c[1] - t[1]).abs() < 3.0,
                "{corners:?}"
            );
        }
    }

    #[test]
    fn a_scan_is_the_whole_frame_and_a_plain_desk_has_no_page() {
        let scan = RgbImage::from_fn(600, 800, |x, y| {
            if y % 40 < 8 && x > 50 && x < 550 {
                Rgb([20, 20, 20])
            } else {
                Rgb([250, 250, 250])
            }
        });
        assert_eq!(find(&scan), Found::WholeFrame);
        let desk = RgbImage::from_fn(600, 800, |x, _| Rgb([100 + (x % 7) as u8, 70, 40]));
        assert_eq!(find(&desk), Found::NoEdge);
    }
}
