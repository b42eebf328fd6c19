//! Cleaning ink on paper (signatures, thumb impressions, declarations): the paper's shading
//! flattened, ruled lines removed, the ink made dark on white and cropped tight with a margin.
//!
//! Written here rather than taken from a crate: each step is a few lines over `image` and
//! `imageproc` (Otsu's threshold), and no maintained crate does this sequence for ink.

use image::imageops::{self, FilterType};
use image::{GrayImage, Luma, Rgb, RgbImage};
use imageproc::contrast::otsu_level;

/// Blocks per side of the paper-brightness estimate: large next to a pen stroke, small next to
/// the shading of a phone photo of a sheet.
const BACKGROUND_BLOCKS: u32 = 24;

/// A horizontal run of ink at least this share of the width is a ruled line, not writing.
const RULED_SHARE: f64 = 0.35;

/// Ink is darker than the paper by at least this much after flattening (of 255), whatever Otsu
/// says on a page with almost no ink.
const MIN_CONTRAST: u8 = 60;

/// Cleans `img` (ink on paper): see the module documentation. A page with no ink is returned
/// as white paper of the same size.
pub fn clean_ink(img: &RgbImage) -> RgbImage {
    let grey = imageops::grayscale(img);
    let flat = flatten(&grey);
    let level = otsu_level(&flat).min(255 - MIN_CONTRAST);
    let (w, h) = flat.dimensions();
    let mut ink: Vec<bool> = flat.pixels().map(|p| p.0[0] < level).collect();
    remove_ruled_lines(&mut ink, w, h);
    let Some((x0, y0, x1, y1)) = bounds(&ink, w, h) else {
        return RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    };
    // Ink keeps its own shade, stretched dark: the darkest stroke goes to black, the threshold to
    // a mid grey, so pen pressure still shows and the JPEG has edges to keep.
    let out = GrayImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        if ink[i] {
            let v = u32::from(flat.get_pixel(x, y).0[0]);
            Luma([u8::try_from(v * 110 / u32::from(level.max(1))).unwrap_or(110)])
        } else {
            Luma([255])
        }
    });
    // A margin of a tenth of the writing's larger side (at least 4 px) on every side.
    let margin = ((x1 - x0).max(y1 - y0) / 10).max(4);
    let (cx0, cy0) = (x0.saturating_sub(margin), y0.saturating_sub(margin));
    let (cx1, cy1) = ((x1 + margin).min(w - 1), (y1 + margin).min(h - 1));
    let cropped = imageops::crop_imm(&out, cx0, cy0, cx1 - cx0 + 1, cy1 - cy0 + 1).to_image();
    image::DynamicImage::ImageLuma8(cropped).into_rgb8()
}

/// [`clean_ink`], then white paper added evenly on two sides to the `width` : `height` aspect,
/// so that fitting to that size scales the writing and crops none of it.
pub fn clean_ink_for(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let ink = clean_ink(img);
    let (w, h) = ink.dimensions();
    let (tw, th) = (u64::from(width.max(1)), u64::from(height.max(1)));
    // The smallest canvas of the target aspect that holds the cleaned image.
    let (cw, ch) = if u64::from(w) * th >= u64::from(h) * tw {
        (
            w,
            u32::try_from((u64::from(w) * th).div_ceil(tw))
                .unwrap_or(h)
                .max(h),
        )
    } else {
        (
            u32::try_from((u64::from(h) * tw).div_ceil(th))
                .unwrap_or(w)
                .max(w),
            h,
        )
    };
    let mut canvas = RgbImage::from_pixel(cw, ch, Rgb([255, 255, 255]));
    imageops::overlay(
        &mut canvas,
        &ink,
        i64::from((cw - w) / 2),
        i64::from((ch - h) / 2),
    );
    canvas
}

/// Divides each pixel by the paper's local brightness (the brightest tenth of each block,
/// smoothed), so shading and a phone's vignette become even white and ink keeps its contrast.
fn flatten(grey: &GrayImage) -> GrayImage {
    let (w, h) = grey.dimensions();
    let (bw, bh) = (BACKGROUND_BLOCKS.min(w), BACKGROUND_BLOCKS.min(h));
    let small = GrayImage::from_fn(bw, bh, |bx, by| {
        let (x0, x1) = (bx * w / bw, ((bx + 1) * w / bw).max(bx * w / bw + 1));
        let (y0, y1) = (by * h / bh, ((by + 1) * h / bh).max(by * h / bh + 1));
        let mut v: Vec<u8> = (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .map(|(x, y)| grey.get_pixel(x, y).0[0])
            .collect();
        let at = (v.len() * 9 / 10).min(v.len().saturating_sub(1));
        let (_, p90, _) = v.select_nth_unstable(at);
        Luma([*p90])
    });
    let paper = imageops::resize(&small, w, h, FilterType::Triangle);
    GrayImage::from_fn(w, h, |x, y| {
        let v = u32::from(grey.get_pixel(x, y).0[0]);
        let p = u32::from(paper.get_pixel(x, y).0[0]).max(1);
        Luma([u8::try_from((v * 255 / p).min(255)).unwrap_or(255)])
    })
}

/// Clears horizontal runs of ink longer than [`RULED_SHARE`] of the width, except where ink
/// continues above and below the run's thickness (a stroke crossing the line stays whole).
fn remove_ruled_lines(ink: &mut [bool], w: u32, h: u32) {
    let (w, h) = (w as usize, h as usize);
    let min_run = ((w as f64 * RULED_SHARE) as usize).max(8);
    let mut ruled = vec![false; ink.len()];
    for y in 0..h {
        let row = &ink[y * w..(y + 1) * w];
        let mut x = 0;
        while x < w {
            if !row[x] {
                x += 1;
                continue;
            }
            let start = x;
            while x < w && row[x] {
                x += 1;
            }
            if x - start >= min_run {
                ruled[y * w + start..y * w + x].fill(true);
            }
        }
    }
    // A ruled line is a few pixels thick; ink 4 px above or below that is not part of it
    // belongs to a stroke crossing it.
    let reach = 4;
    let keep: Vec<bool> = (0..ink.len())
        .map(|i| {
            if !ruled[i] {
                return false;
            }
            let (x, y) = (i % w, i / w);
            let stroke = |yy: usize| ink[yy * w + x] && !ruled[yy * w + x];
            (y >= reach && stroke(y - reach)) && (y + reach < h && stroke(y + reach))
        })
        .collect();
    for i in 0..ink.len() {
        if ruled[i] && !keep[i] {
            ink[i] = false;
        }
    }
}

/// The bounding box (inclusive) of the ink, if any.
fn bounds(ink: &[bool], w: u32, h: u32) -> Option<(u32, u32, u32, u32)> {
    let mut b: Option<(u32, u32, u32, u32)> = None;
    for y in 0..h {
        for x in 0..w {
            if ink[(y * w + x) as usize] {
                b = Some(match b {
                    None => (x, y, x, y),
                    Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
                });
            }
        }
    }
    b
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A signature-like scrawl (two loops and a tail) on shaded, ruled paper: the paper darkens
    /// from 235 at the left to 150 at the right, with grey ruled lines every 60 px.
    fn shaded_ruled_signature() -> (RgbImage, Vec<(u32, u32)>) {
        let (w, h) = (900u32, 400u32);
        let mut img = RgbImage::from_fn(w, h, |x, y| {
            let paper = 235 - (85 * x / w) as u8;
            let ruled = y % 60 == 30 || y % 60 == 31;
            let v = if ruled { paper - 70 } else { paper };
            Rgb([v, v, v])
        });
        let mut ink_at = Vec::new();
        for t in 0..2000 {
            let a = t as f64 / 2000.0 * std::f64::consts::TAU * 3.0;
            let x = 200.0 + 60.0 * (a / 3.0) + 50.0 * a.cos();
            let y = 200.0 + 60.0 * a.sin();
            for dx in 0..3 {
                for dy in 0..3 {
                    let (px, py) = (x as u32 + dx, y as u32 + dy);
                    let paper = 235 - (85 * px / w) as u8;
                    // Blue-black ink, a little lighter than the darkest paper.
                    img.put_pixel(px, py, Rgb([20, 25, paper / 3 + 40]));
                    ink_at.push((px, py));
                }
            }
        }
        (img, ink_at)
    }

    #[test]
    fn shading_and_ruled_lines_go_and_the_ink_stays_dark_on_white() {
        let (img, _) = shaded_ruled_signature();
        let out = clean_ink(&img);
        let (w, h) = out.dimensions();
        // Cropped to the scrawl (x ≈150..630, y 140..262) with a margin, not the whole sheet.
        assert!(w < 600 && h < 230 && w > 400 && h > 120, "{w}×{h}");
        let grey = imageops::grayscale(&out);
        let dark = grey.pixels().filter(|p| p.0[0] < 128).count();
        let white = grey.pixels().filter(|p| p.0[0] == 255).count();
        // The ink: thousands of dark pixels kept; the paper: pure white, shading gone.
        assert!(dark > 3000, "{dark}");
        assert!(
            white as f64 > 0.8 * f64::from(w * h),
            "{white} of {}",
            w * h
        );
        // No ruled line left: no row more than a third dark.
        for y in 0..h {
            let row = (0..w).filter(|&x| grey.get_pixel(x, y).0[0] < 200).count();
            assert!(row < (w / 3) as usize, "row {y}: {row} dark of {w}");
        }
    }

    #[test]
    fn the_cleaned_writing_is_padded_to_the_rule_aspect_without_losing_ink() {
        let (img, _) = shaded_ruled_signature();
        let tight = clean_ink(&img);
        let out = clean_ink_for(&img, 140, 60);
        let (w, h) = out.dimensions();
        // 140:60 within a pixel of rounding, and every dark pixel of the tight crop kept.
        assert!(
            (f64::from(w) / f64::from(h) - 140.0 / 60.0).abs() < 0.02,
            "{w}×{h}"
        );
        let dark = |i: &RgbImage| {
            imageops::grayscale(i)
                .pixels()
                .filter(|p| p.0[0] < 128)
                .count()
        };
        assert_eq!(dark(&out), dark(&tight));
    }

    #[test]
    fn a_blank_sheet_comes_back_white() {
        let img = RgbImage::from_fn(300, 200, |x, _| {
            let v = 230 - (60 * x / 300) as u8;
            Rgb([v, v, v])
        });
        let out = clean_ink(&img);
        assert!(imageops::grayscale(&out).pixels().all(|p| p.0[0] == 255));
    }
}
