//! Sample images for the decoder's tests, shared by its unit tests (`src/decode/tests/`, through
//! `#[path]`) and the fuzz harness (`tests/decode_fuzz.rs`).

// Each includer uses part of it.
#![allow(dead_code)]

use std::io::Cursor;

use image::{DynamicImage, Rgb, RgbImage};

/// A noisy gradient, so every codec has real detail to encode.
pub fn photo(width: u32, height: u32) -> RgbImage {
    let mut seed = 0x9E37_79B9u32;
    RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed % 32) as u8;
        Rgb([
            ((x * 255 / width) as u8).saturating_add(n),
            ((y * 255 / height) as u8).saturating_add(n),
            128u8.saturating_add(n),
        ])
    })
}

/// A 24×16 photo encoded in each format image-rs writes (GIF needs RGBA).
pub fn small_photo_in_every_format() -> Vec<(image::ImageFormat, Vec<u8>)> {
    let src = DynamicImage::ImageRgb8(photo(24, 16));
    [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::WebP,
        image::ImageFormat::Gif,
        image::ImageFormat::Bmp,
        image::ImageFormat::Tiff,
    ]
    .into_iter()
    .map(|format| {
        let mut bytes = Cursor::new(Vec::new());
        let img = if format == image::ImageFormat::Gif {
            DynamicImage::ImageRgba8(src.to_rgba8())
        } else {
            src.clone()
        };
        img.write_to(&mut bytes, format).unwrap();
        (format, bytes.into_inner())
    })
    .collect()
}
