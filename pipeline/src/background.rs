//! BACKGROUND: a photo rule that asks for a plain white or light backdrop gets the person cut
//! out and set on white; a rule that allows any background keeps the photo's own.
//!
//! The person mask comes from the segmenter at 256×256 ([`rythmiq_face::Segmenter`]). Only its
//! largest blob is kept (a flag or a poster the model half-believes is a person touches the
//! frame's edge, away from the subject). The mask is then refined against the photo's own
//! edges with a guided filter (K. He, J. Sun, X. Tang, "Guided Image Filtering", ECCV 2010),
//! computed at a reduced size and upsampled as in "Fast Guided Filter" (K. He, J. Sun, 2015,
//! <https://arxiv.org/abs/1505.00996>), so soft hair stays soft. Edge pixels are blends of the
//! person and the old backdrop: compositing swaps the backdrop colour estimated around each
//! pixel for white, in the share the matte gives it, so no coloured halo is left.
//! White serves `light` rules too: white is the lightest backdrop, and what most forms prefer.
//!
//! Written by hand: no maintained crate offers a guided filter or foreground estimation on
//! `image` buffers; the box filters are summed-area tables. The planes are resampled by
//! `fast_image_resize`.

use image::{GrayImage, Luma, RgbImage};
use imageproc::region_labelling::{Connectivity, connected_components};
use rythmiq_domain::{DocumentKind, RuleSpec};
use rythmiq_face::{PersonMask, Segmenter};

use crate::Error;

/// The backdrop colour every replaced background gets.
pub const BACKDROP: [u8; 3] = [255, 255, 255];

/// Longest side of the working size the matte is refined at (the fast guided filter's
/// subsampling): twice the mask's resolution, enough for the photo's edges to guide it.
const WORK_SIDE: u32 = 512;

/// Guided-filter window radius at the working size, pixels: a little more than the mask's
/// cell (2 working pixels), so that the filter can move an edge by a cell to the photo's edge.
const RADIUS: usize = 4;

/// Guided-filter regularisation (intensities 0–1): edges weaker than a luma step of about
/// sqrt(EPS) ≈ 0.03 do not pull the matte.
const EPS: f32 = 1e-3;

/// Matte values below `LOW` become fully background, above `HIGH` fully person: the model's
/// soft tail over the backdrop would otherwise leave a faint veil of it on the white.
const LOW: f32 = 0.15;
const HIGH: f32 = 0.85;

/// Whether `rule` gets its background replaced: photo rules whose `background` is `white` or
/// `light`; `any` (or anything else) keeps the original. Rules framed by the face replace it
/// on the framed picture; the others only when the photo shows one person
/// ([`crate::face::shows_one_person`]), on the photo before it is cropped.
pub fn applies(rule: &RuleSpec) -> bool {
    rule.kind == DocumentKind::Photo && matches!(rule.background.as_str(), "white" | "light")
}

/// `img` with its background replaced by [`BACKDROP`]; a `background_not_plain` warning when
/// the result's backdrop band still fails the check's background line for `rule`.
pub fn replace(
    segmenter: &Segmenter,
    img: &RgbImage,
    rule: &RuleSpec,
    warnings: &mut Vec<String>,
) -> Result<RgbImage, Error> {
    let mask = segmenter.person_mask(img).map_err(Error::Face)?;
    let out = match matte(img, &mask) {
        Some(alpha) => composite(img, &alpha),
        // No person at all: nothing to keep, nothing is cut; the check below warns.
        None => img.clone(),
    };
    let line = crate::check::background_line(&out, rule);
    if line.passed == Some(false) {
        warnings.push(format!(
            "background_not_plain: the background could not be made plain ({}); \
             retake the photo against a plain light wall",
            line.found
        ));
    }
    Ok(out)
}

/// A single-channel f32 image, row-major.
#[derive(Clone)]
struct Plane {
    w: usize,
    h: usize,
    data: Vec<f32>,
}

impl Plane {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            data: vec![0.0; w * h],
        }
    }

    /// Mean over the (2r+1)² window around each pixel, clipped at the borders, from a
    /// summed-area table (f64, so that large sums keep their precision).
    fn box_mean(&self, r: usize) -> Plane {
        let (w, h) = (self.w, self.h);
        let mut sat = vec![0f64; (w + 1) * (h + 1)];
        for y in 0..h {
            let mut row = 0f64;
            for x in 0..w {
                row += f64::from(self.data[y * w + x]);
                sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
            }
        }
        let mut out = Plane::new(w, h);
        for y in 0..h {
            let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
            for x in 0..w {
                let (x0, x1) = (x.saturating_sub(r), (x + r + 1).min(w));
                let s = sat[y1 * (w + 1) + x1] - sat[y0 * (w + 1) + x1] - sat[y1 * (w + 1) + x0]
                    + sat[y0 * (w + 1) + x0];
                out.data[y * w + x] = (s / ((y1 - y0) * (x1 - x0)) as f64) as f32;
            }
        }
        out
    }

    fn zip(&self, other: &Plane, f: impl Fn(f32, f32) -> f32) -> Plane {
        Plane {
            w: self.w,
            h: self.h,
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        }
    }

    /// Resampled to `w`×`h` by `fast_image_resize`'s bilinear filter: pixel centres aligned
    /// (the convention of the mask's stretch over the image), and widened when shrinking, so a
    /// full-size matte brought to the working size averages its pixels rather than skipping
    /// them. `None` only if the resizer refuses the planes, which it does for no size.
    fn resized(&self, w: usize, h: usize) -> Option<Plane> {
        use fast_image_resize::images::{TypedImage, TypedImageRef};
        use fast_image_resize::pixels::F32;
        use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
        let mut out = Plane::new(w, h);
        // The resizer reads and writes the planes in place, through their bytes.
        let src = TypedImageRef::<F32>::from_buffer(
            self.w as u32,
            self.h as u32,
            bytemuck::cast_slice(&self.data),
        )
        .ok()?;
        let mut dst = TypedImage::<F32>::from_buffer(
            w as u32,
            h as u32,
            bytemuck::cast_slice_mut(&mut out.data),
        )
        .ok()?;
        let bilinear =
            ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        Resizer::new()
            .resize_typed(&src, &mut dst, &bilinear)
            .ok()?;
        Some(out)
    }
}

/// The mask with everything but its largest blob (at 0.5) cleared, or `None` when no pixel
/// reaches 0.5. The blob is grown by two cells first, so the soft edge around it stays.
fn largest_blob(mask: &PersonMask) -> Option<Plane> {
    let (w, h) = mask.dimensions();
    let binary = GrayImage::from_fn(w, h, |x, y| {
        Luma([u8::from(mask.get_pixel(x, y)[0] >= 0.5)])
    });
    let labels = connected_components(&binary, Connectivity::Eight, Luma([0]));
    let mut areas = std::collections::HashMap::<u32, usize>::new();
    for l in labels.pixels().filter(|l| l[0] != 0) {
        *areas.entry(l[0]).or_default() += 1;
    }
    let (&keep, _) = areas.iter().max_by_key(|(_, a)| **a)?;
    let blob = GrayImage::from_fn(w, h, |x, y| {
        Luma([if labels.get_pixel(x, y)[0] == keep {
            255
        } else {
            0
        }])
    });
    let grown = imageproc::morphology::dilate(&blob, imageproc::distance_transform::Norm::LInf, 2);
    let data = mask
        .pixels()
        .zip(grown.pixels())
        .map(|(m, g)| if g[0] > 0 { m[0] } else { 0.0 })
        .collect();
    Some(Plane {
        w: w as usize,
        h: h as usize,
        data,
    })
}

/// The working-size copy of `img` (see [`WORK_SIDE`]), as RGB planes scaled to 0–1.
fn working_planes(img: &RgbImage) -> [Plane; 3] {
    let (w, h) = img.dimensions();
    let scale = (WORK_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (ww, wh) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    let small = if (ww, wh) == (w, h) {
        img.clone()
    } else {
        use fast_image_resize::{FilterType, ResizeAlg};
        rythmiq_ocr::resampled(img, ww, wh, ResizeAlg::Convolution(FilterType::Bilinear))
    };
    let mut planes = [(); 3].map(|()| Plane::new(ww as usize, wh as usize));
    for (i, px) in small.pixels().enumerate() {
        for (c, plane) in planes.iter_mut().enumerate() {
            plane.data[i] = f32::from(px[c]) / 255.0;
        }
    }
    planes
}

/// The refined matte and the backdrop colour around each pixel, both at full size.
struct Matte {
    alpha: Plane,
    /// Mean colour (0–1) of the backdrop near each pixel, weighted by how much of it shows.
    backdrop: [Plane; 3],
}

/// The person's matte over `img`: the mask's largest blob, refined by a grey-guided filter at
/// the working size, whose linear coefficients are upsampled and applied to the full-size luma.
fn matte(img: &RgbImage, mask: &PersonMask) -> Option<Matte> {
    let blob = largest_blob(mask)?;
    let [r, g, b] = working_planes(img);
    let (ww, wh) = (r.w, r.h);
    let guide = Plane {
        w: ww,
        h: wh,
        data: (0..ww * wh)
            .map(|i| 0.299 * r.data[i] + 0.587 * g.data[i] + 0.114 * b.data[i])
            .collect(),
    };
    let p = blob.resized(ww, wh)?;
    // He et al., Algorithm 1: q = mean(a)·I + mean(b), a = cov(I, p) / (var(I) + ε).
    let mean_i = guide.box_mean(RADIUS);
    let mean_p = p.box_mean(RADIUS);
    let corr_ip = guide.zip(&p, |i, p| i * p).box_mean(RADIUS);
    let corr_ii = guide.zip(&guide, |i, j| i * j).box_mean(RADIUS);
    let mut a = Plane::new(ww, wh);
    let mut bb = Plane::new(ww, wh);
    for k in 0..ww * wh {
        let var = corr_ii.data[k] - mean_i.data[k] * mean_i.data[k];
        let cov = corr_ip.data[k] - mean_i.data[k] * mean_p.data[k];
        a.data[k] = cov / (var + EPS);
        bb.data[k] = mean_p.data[k] - a.data[k] * mean_i.data[k];
    }
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mean_a = a.box_mean(RADIUS).resized(w, h)?;
    let mean_b = bb.box_mean(RADIUS).resized(w, h)?;
    let mut alpha = Plane::new(w, h);
    for (k, px) in img.pixels().enumerate() {
        let [pr, pg, pb] = px.0.map(f32::from);
        let luma = (0.299 * pr + 0.587 * pg + 0.114 * pb) / 255.0;
        let q = mean_a.data[k] * luma + mean_b.data[k];
        alpha.data[k] = ((q - LOW) / (HIGH - LOW)).clamp(0.0, 1.0);
    }
    // The backdrop colour near each pixel: the working-size colour averaged over a wide window,
    // weighted by how much backdrop (1 − matte) each pixel shows.
    let bg = alpha.resized(ww, wh)?;
    let weight = Plane {
        w: ww,
        h: wh,
        data: bg.data.iter().map(|a| 1.0 - a).collect(),
    };
    let wide = 4 * RADIUS;
    let norm = weight.box_mean(wide);
    let [red, green, blue] = [r, g, b].map(|c| {
        c.zip(&weight, |v, wt| v * wt)
            .box_mean(wide)
            .zip(&norm, |s, n| if n > 1e-4 { s / n } else { 1.0 })
            .resized(w, h)
    });
    Some(Matte {
        alpha,
        backdrop: [red?, green?, blue?],
    })
}

/// `img` on [`BACKDROP`]: each pixel is C + (1 − α)(W − B), C its colour, B the backdrop colour
/// estimated around it, W white. Solving C = αF + (1 − α)B for the foreground F and compositing
/// αF + (1 − α)W gives exactly this; the person (α = 1) keeps its pixels and a hair strand keeps
/// its own colour without the old backdrop's tint.
fn composite(img: &RgbImage, m: &Matte) -> RgbImage {
    let mut out = img.clone();
    for (k, px) in out.pixels_mut().enumerate() {
        let bg = 1.0 - m.alpha.data[k];
        if bg <= 0.0 {
            continue;
        }
        for c in 0..3 {
            let white = f32::from(BACKDROP[c]);
            let v = f32::from(px[c]) + bg * (white - 255.0 * m.backdrop[c].data[k]);
            // The foreground share (αF) can be no darker than black: clamping it keeps a strand
            // over a bright backdrop from going negative, and never darkens the result below the
            // backdrop's share of white.
            px[c] = v.clamp(bg * white, 255.0).round() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizing_a_plane_keeps_a_ramp_linear() {
        let ramp = Plane {
            w: 4,
            h: 1,
            data: vec![0.0, 1.0, 2.0, 3.0],
        };
        let Some(big) = ramp.resized(8, 2) else {
            panic!("the resizer refused a 4×1 plane");
        };
        // Centres of the 8 outputs map to -0.25, 0.25, … 3.25 in the source, clamped.
        let want = [0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0];
        for (got, want) in big.data[..8].iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{:?}", big.data);
        }
    }

    #[test]
    fn box_mean_averages_the_clipped_window() {
        let p = Plane {
            w: 3,
            h: 1,
            data: vec![3.0, 6.0, 9.0],
        };
        assert_eq!(p.box_mean(1).data, vec![4.5, 6.0, 7.5]);
    }

    #[test]
    fn compositing_swaps_the_estimated_backdrop_for_white() {
        // A half-covered pixel over a blue backdrop: C = 0.5·F + 0.5·B with F = mid grey.
        let img = RgbImage::from_pixel(1, 1, image::Rgb([64, 64, 191]));
        let m = Matte {
            alpha: Plane {
                w: 1,
                h: 1,
                data: vec![0.5],
            },
            backdrop: [0.0, 0.0, 1.0].map(|v| Plane {
                w: 1,
                h: 1,
                data: vec![v],
            }),
        };
        let out = composite(&img, &m);
        // 0.5·128 + 0.5·255: grey over white, no blue left.
        assert_eq!(out.get_pixel(0, 0).0, [192, 192, 191]);
    }
}
