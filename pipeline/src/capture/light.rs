//! Even lighting: shadows and colour casts divided out, paper white, ink dark.
//!
//! The background (the paper as lit) is estimated at a coarse scale: a thumbnail, a maximum
//! filter that replaces text by the paper around it, a blur; then each pixel is divided by it,
//! channel by channel. Dividing keeps the ink's colour relative to its paper (a blue stamp
//! stays blue) while a warm lamp or a hand's shadow, which scale all of the paper, go. The
//! same idea as a flat-field correction, or "divide by the blurred background" in scanner apps.

use image::{GrayImage, Luma, Rgb, RgbImage};
use imageproc::morphology::{Mask, grayscale_dilate};

/// Thumbnail longer side for the background estimate: shadows and casts vary over hundreds of
/// pixels, text over a few.
const BACKGROUND_SIDE: u32 = 160;

/// Paper comes out at this level (not 255: a little headroom keeps faint paper texture from
/// clipping into blotches).
const PAPER: f32 = 250.0;

/// Ink at or below this fraction of the paper's brightness comes out black.
const INK: f32 = 0.25;

/// `img` with its lighting evened out, and the spread of the paper's estimated brightness
/// before (max/min over the page, 1.0 when even).
pub fn normalise(img: &RgbImage) -> (RgbImage, f32) {
    let (w, h) = img.dimensions();
    let scale = BACKGROUND_SIDE as f32 / w.max(h) as f32;
    let (tw, th) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    let small = image::imageops::thumbnail(img, tw, th);
    // Each channel: dilate (a maximum filter: the paper around the text), then smooth.
    let mut channels = [0usize, 1, 2].map(|c| {
        let plane = GrayImage::from_fn(tw, th, |x, y| Luma([small.get_pixel(x, y)[c]]));
        let paper = grayscale_dilate(&plane, &Mask::square(3));
        imageproc::filter::gaussian_blur_f32(&paper, 2.0)
    });
    let (mut lo, mut hi) = (255u8, 0u8);
    for p in channels[1].pixels() {
        lo = lo.min(p[0]);
        hi = hi.max(p[0]);
    }
    let spread = f32::from(hi) / f32::from(lo.max(1));
    let full = channels
        .each_mut()
        .map(|plane| image::imageops::resize(plane, w, h, image::imageops::FilterType::Triangle));
    let mut out = RgbImage::new(w, h);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let src = img.get_pixel(x, y);
        *px = Rgb(std::array::from_fn(|c| {
            let bg = f32::from(full[c].get_pixel(x, y)[0]).max(8.0);
            let v = (f32::from(src[c]) / bg).min(1.0);
            // Stretch [INK, 1] to [0, PAPER].
            (((v - INK) / (1.0 - INK)).max(0.0) * PAPER) as u8
        }));
    }
    (out, spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_and_a_warm_cast_are_divided_out_and_ink_stays_dark() {
        // Paper lit from the left: 230 down to 120, warm (less blue), with a dark line of text.
        let img = RgbImage::from_fn(400, 300, |x, y| {
            let light = 230.0 - 110.0 * x as f32 / 400.0;
            let ink = if (140..150).contains(&y) && x % 10 < 6 {
                0.15
            } else {
                1.0
            };
            Rgb([light * ink, light * 0.95 * ink, light * 0.8 * ink].map(|v| v as u8))
        });
        let (out, spread) = normalise(&img);
        assert!(spread > 1.5, "{spread}");
        for x in [20, 200, 380] {
            let p = out.get_pixel(x, 50);
            assert!(p.0.iter().all(|&v| v >= 240), "paper at {x}: {p:?}");
            let ink = out.get_pixel(x + 1, 145);
            assert!(ink.0.iter().all(|&v| v <= 30), "ink at {x}: {ink:?}");
        }
    }
}
