//! Any colour type to 8-bit RGB, transparency composited onto white.

use image::{DynamicImage, GrayImage, Rgb, RgbImage};

/// Convert any colour type to 8-bit RGB, compositing transparency onto white.
pub(crate) fn flatten_on_white(img: DynamicImage) -> RgbImage {
    // Grey (scans, signatures) is expanded directly: `image`'s generic conversion costs ~10 ns a
    // pixel, 45 ms for an A4 page at 200 DPI.
    let img = match img {
        DynamicImage::ImageLuma8(grey) => return grey_to_rgb(&grey),
        DynamicImage::ImageLumaA8(grey) => {
            let mut rgb = RgbImage::new(grey.width(), grey.height());
            for (dst, px) in rgb.chunks_exact_mut(3).zip(grey.as_raw().chunks_exact(2)) {
                dst.fill(blend_on_white(px[0], px[1]));
            }
            return rgb;
        }
        other => other,
    };
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let blend = |c: u8| blend_on_white(c, src[3]);
        *dst = Rgb([blend(src[0]), blend(src[1]), blend(src[2])]);
    }
    out
}

/// One channel value with coverage `alpha` composited onto white.
pub(super) fn blend_on_white(c: u8, alpha: u8) -> u8 {
    let alpha = u16::from(alpha);
    let v = (u16::from(c) * alpha + 255 * (255 - alpha) + 127) / 255;
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// A grey image as RGB with three equal channels.
pub(super) fn grey_to_rgb(grey: &GrayImage) -> RgbImage {
    let mut rgb = RgbImage::new(grey.width(), grey.height());
    for (dst, &v) in rgb.chunks_exact_mut(3).zip(grey.as_raw()) {
        dst.fill(v);
    }
    rgb
}
