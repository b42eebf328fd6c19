//! Geometry: the crop to the rule's aspect ratio and the resampling to its exact pixel size, in
//! one grey channel when the crop has no colour.

use image::{DynamicImage, GrayImage, RgbImage};
use rythmiq_domain::DocumentKind;

use super::crop::subject_crop;
use super::{FitError, Target};
use crate::decode::flatten_on_white;

/// The pixels to encode, at the target size.
#[derive(Debug, Clone)]
pub(super) enum Pixels {
    Rgb(RgbImage),
    /// Every source pixel of the crop had R = G = B (a grey scan expanded to RGB by decode): one
    /// channel is resized and encoded instead of three equal ones.
    Grey(GrayImage),
}

impl Pixels {
    pub(super) fn is_grey(&self) -> bool {
        matches!(self, Pixels::Grey(_))
    }

    pub(super) fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Rgb(rgb) => rgb.dimensions(),
            Pixels::Grey(grey) => grey.dimensions(),
        }
    }

    /// The samples, interleaved, with their JPEG colour type.
    pub(super) fn samples(&self) -> (&[u8], jpeg_encoder::ColorType) {
        match self {
            Pixels::Rgb(rgb) => (rgb.as_raw(), jpeg_encoder::ColorType::Rgb),
            Pixels::Grey(grey) => (grey.as_raw(), jpeg_encoder::ColorType::Luma),
        }
    }

    pub(super) fn into_rgb(self) -> RgbImage {
        match self {
            Pixels::Rgb(rgb) => rgb,
            Pixels::Grey(grey) => flatten_on_white(DynamicImage::ImageLuma8(grey)),
        }
    }
}

/// Crop `img` to the target aspect ratio (centred, or around the subject for photos: see
/// [`subject_crop`]) and resize it to the exact target size, as RGB8 with any transparency
/// flattened onto white, or as one grey channel when the crop is grey ([`Pixels::Grey`]).
pub(super) fn resize_to_target(
    img: &DynamicImage,
    kind: DocumentKind,
    target: &Target,
    warnings: &mut Vec<String>,
) -> Result<Pixels, FitError> {
    let (tw, th) = (target.width, target.height);
    let (w, h) = (img.width(), img.height());
    if w == 0 || h == 0 {
        return Err(FitError::Failed("the input image has no pixels".to_owned()));
    }
    let (x, y, cw, ch) = centre_crop(w, h, tw, th);
    if cw < tw || ch < th {
        warnings.push(format!(
            "the photo is smaller than required ({cw}×{ch} after cropping, portal wants \
             {tw}×{th}); it was enlarged and may look soft"
        ));
    }

    // Transparency goes onto white before any filtering, so transparent pixels' hidden colour
    // cannot bleed into the edges. Decode output is already opaque RGB8 and is borrowed as is.
    let owned;
    let source: &RgbImage = match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => {
            owned = flatten_on_white(other.clone());
            &owned
        }
    };
    // Photos keep their subject; signatures and pages stay centred (their content is the page).
    let (x, y) = if kind == DocumentKind::Photo && (cw, ch) != (w, h) {
        subject_crop(source, cw, ch).unwrap_or((x, y))
    } else {
        (x, y)
    };
    if let Some(grey) = grey_crop(source, (x, y, cw, ch)) {
        let grey = if (cw, ch) == (tw, th) {
            grey
        } else {
            resample(&grey, (0, 0, cw, ch), tw, th)?
        };
        // Portals ask for colour photographs and some check a JPEG's component count: a grey
        // photo is still written with three components (expanded at the small target size);
        // signatures and pages may be one.
        return Ok(if kind == DocumentKind::Photo {
            Pixels::Rgb(Pixels::Grey(grey).into_rgb())
        } else {
            Pixels::Grey(grey)
        });
    }
    if (cw, ch) == (tw, th) {
        // Already the right size: the crop alone.
        return Ok(Pixels::Rgb(
            image::imageops::crop_imm(source, x, y, cw, ch).to_image(),
        ));
    }
    resample(source, (x, y, cw, ch), tw, th).map(Pixels::Rgb)
}

/// Samples per side of the grid [`grey_crop`] looks at before reading every pixel.
pub(super) const GREY_PROBE: u32 = 64;

/// The `crop` rectangle (x, y, w, h) of `source` as one channel when all its pixels have
/// R = G = B, else `None`. A colour image is turned down after a [`GREY_PROBE`]² sample grid
/// (microseconds); a grey one costs a single pass, which also extracts the channel.
pub(super) fn grey_crop(source: &RgbImage, crop: (u32, u32, u32, u32)) -> Option<GrayImage> {
    let (x, y, cw, ch) = crop;
    let is_grey = |p: &image::Rgb<u8>| p[0] == p[1] && p[1] == p[2];
    let (sx, sy) = ((cw / GREY_PROBE).max(1), (ch / GREY_PROBE).max(1));
    for py in (y..y + ch).step_by(sy as usize) {
        for px in (x..x + cw).step_by(sx as usize) {
            if !is_grey(source.get_pixel(px, py)) {
                return None;
            }
        }
    }
    let (w, x, cw) = (source.width() as usize, x as usize, cw as usize);
    let mut grey = vec![0; cw * ch as usize];
    let rows = source.as_raw().chunks_exact(w * 3).skip(y as usize);
    for (dst, row) in grey.chunks_exact_mut(cw).zip(rows) {
        // No early exit inside a row, so the comparison vectorises.
        let mut same = true;
        for (d, p) in dst.iter_mut().zip(row[x * 3..(x + cw) * 3].chunks_exact(3)) {
            same &= (p[0] == p[1]) & (p[1] == p[2]);
            *d = p[0];
        }
        if !same {
            return None;
        }
    }
    GrayImage::from_raw(cw as u32, ch, grey)
}

/// Lanczos-3 resampling of the `crop` rectangle (x, y, w, h) of `source` (RGB or grey) to
/// `tw`×`th`, with `fast_image_resize` (SIMD convolution, gamma-encoded values as before; the
/// crop is read in place, not copied).
pub(super) fn resample<P>(
    source: &image::ImageBuffer<P, Vec<u8>>,
    crop: (u32, u32, u32, u32),
    tw: u32,
    th: u32,
) -> Result<image::ImageBuffer<P, Vec<u8>>, FitError>
where
    P: image::Pixel<Subpixel = u8>,
    image::ImageBuffer<P, Vec<u8>>:
        fast_image_resize::IntoImageView + fast_image_resize::IntoImageViewMut,
{
    use fast_image_resize::{FilterType as Fir, ResizeAlg, ResizeOptions, Resizer};

    let (x, y, cw, ch) = crop;
    // A convolution at any ratio: its kernel widens with the ratio, so it averages every source
    // pixel (no aliasing on text or fine patterns); a nearest-neighbour pre-pass would be cheaper
    // on a full-size scan but would alias. Large JPEGs arrive already reduced (decode.rs).
    let algorithm = ResizeAlg::Convolution(Fir::Lanczos3);
    let options = ResizeOptions::new().resize_alg(algorithm).crop(
        f64::from(x),
        f64::from(y),
        f64::from(cw),
        f64::from(ch),
    );
    let mut out = image::ImageBuffer::new(tw, th);
    Resizer::new()
        .resize(source, &mut out, &options)
        .map_err(|e| FitError::Failed(format!("resizing failed: {e}")))?;
    Ok(out)
}

/// The largest centred rectangle of `w`×`h` with the aspect ratio of `tw`×`th`: (x, y, w, h).
pub(super) fn centre_crop(w: u32, h: u32, tw: u32, th: u32) -> (u32, u32, u32, u32) {
    let (w64, h64, tw64, th64) = (u64::from(w), u64::from(h), u64::from(tw), u64::from(th));
    let narrow = |v: u64, fallback: u32| u32::try_from(v).unwrap_or(fallback);
    if w64 * th64 > h64 * tw64 {
        // Too wide: keep the full height.
        let cw = ((h64 * tw64 + th64 / 2) / th64).clamp(1, w64);
        (narrow((w64 - cw) / 2, 0), 0, narrow(cw, w), h)
    } else {
        // Too tall (or exact): keep the full width.
        let ch = ((w64 * th64 + tw64 / 2) / tw64).clamp(1, h64);
        (0, narrow((h64 - ch) / 2, 0), w, narrow(ch, h))
    }
}
