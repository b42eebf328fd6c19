//! Flattening: the page's quadrilateral warped to an upright rectangle with the page's own
//! aspect ratio.

use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::{Interpolation, Projection, warp_into};

use super::page::Quad;

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// Output size for `q`: the mean of opposite sides. The far edge of a tilted page is shortened
/// by perspective as much as its near edge is lengthened, so the mean keeps the page's own
/// proportions for the tilts a hand-held phone makes (a few degrees).
pub fn flat_size(q: &Quad) -> (f32, f32) {
    let w = (dist(q[0], q[1]) + dist(q[3], q[2])) / 2.0;
    let h = (dist(q[0], q[3]) + dist(q[1], q[2])) / 2.0;
    (w, h)
}

/// How far `q` is from a rectangle seen head-on: the larger of the two ratios of opposite
/// sides, minus one (0 for a rectangle, 0.12 for a 6 % perspective tilt each way).
pub fn keystone(q: &Quad) -> f32 {
    let ratio = |a: f32, b: f32| a.max(b) / a.min(b).max(1.0);
    let horizontal = ratio(dist(q[0], q[1]), dist(q[3], q[2]));
    let vertical = ratio(dist(q[0], q[3]), dist(q[1], q[2]));
    horizontal.max(vertical) - 1.0
}

/// Warps the quad `q` of `img` onto a `w`×`h` rectangle (bilinear).
pub fn flatten(img: &RgbImage, q: &Quad, w: u32, h: u32) -> Option<RgbImage> {
    let (wf, hf) = (w as f32, h as f32);
    let projection = Projection::from_control_points(
        q.map(|[x, y]| (x, y)),
        [(0.0, 0.0), (wf, 0.0), (wf, hf), (0.0, hf)],
    )?;
    let mut out = RgbImage::new(w, h);
    warp_into(
        img,
        &projection,
        Interpolation::Bilinear,
        Rgb([255, 255, 255]),
        &mut out,
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keystoned_quad_keeps_its_mean_sides() {
        let q = [[10.0, 0.0], [90.0, 0.0], [100.0, 200.0], [0.0, 200.0]];
        let (w, h) = flat_size(&q);
        assert!(
            (w - 90.0).abs() < 0.01 && (h - 200.25).abs() < 0.1,
            "{w} {h}"
        );
        assert!((keystone(&q) - 0.25).abs() < 0.01);
    }
}
