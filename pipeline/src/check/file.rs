//! What a file says about itself, read from its container without changing it: its real type,
//! stored pixel size, the DPI written in it, its colour mode and its EXIF orientation.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{ImageDecoder, ImageFormat, ImageReader};
use rythmiq_domain::OutputFormat;
use rythmiq_domain::sniff::{Sniffed, sniff_image};

use crate::fit::{PNG_MAGIC, find, jfif_segment, ppm_to_dpi, sniff};

/// The colour model of the stored pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColourMode {
    Grey,
    GreyAlpha,
    Rgb,
    Rgba,
    Palette,
    /// Four-component JPEG (CMYK or YCCK): printers' colour, which browsers and portals mis-show.
    Cmyk,
}

impl ColourMode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ColourMode::Grey => "greyscale",
            ColourMode::GreyAlpha => "greyscale with transparency",
            ColourMode::Rgb => "RGB colour",
            ColourMode::Rgba => "RGB colour with transparency",
            ColourMode::Palette => "palette colour",
            ColourMode::Cmyk => "CMYK (print) colour",
        }
    }
}

/// The DPI a file states, as read from its container.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Density {
    /// No density is written (or only an aspect ratio, JFIF unit 0).
    None,
    /// Dots per inch, horizontal and vertical (rounded).
    Dpi(u32, u32),
}

/// The facts of one file, as its container states them.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// The output format the content really is (by magic bytes), if it is one a rule can ask for.
    pub(crate) format: Option<OutputFormat>,
    /// The MIME type the content really is, whatever the name says.
    pub(crate) content_type: &'static str,
    /// Stored pixel size (before any EXIF rotation).
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) density: Density,
    pub(crate) colour: Option<ColourMode>,
    pub(crate) orientation: Orientation,
    /// The bytes of the image itself: the file, or the JPEG a PDF page shows.
    pub(crate) image: Vec<u8>,
}

/// Reads the facts of `bytes`; `None` when it is no image (nor a PDF holding one) we can read.
pub(crate) fn read(bytes: &[u8]) -> Option<Facts> {
    let format = sniff(bytes);
    if format == Some(OutputFormat::Pdf) {
        return read_pdf(bytes);
    }
    let sniffed = sniff_image(bytes)?;
    let mut facts = read_image(bytes, sniffed)?;
    facts.format = format;
    Some(facts)
}

fn read_image(bytes: &[u8], sniffed: Sniffed) -> Option<Facts> {
    let image_format = match sniffed {
        Sniffed::Jpeg => ImageFormat::Jpeg,
        Sniffed::Png => ImageFormat::Png,
        Sniffed::Webp => ImageFormat::WebP,
        Sniffed::Gif => ImageFormat::Gif,
        Sniffed::Tiff => ImageFormat::Tiff,
        Sniffed::Bmp => ImageFormat::Bmp,
        // HEIC needs libheif for its header; the full decode below still reads it.
        Sniffed::Heif => {
            return Some(Facts {
                format: None,
                content_type: sniffed.content_type(),
                width: 0,
                height: 0,
                density: Density::None,
                colour: None,
                orientation: Orientation::NoTransforms,
                image: bytes.to_vec(),
            });
        }
    };
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), image_format)
        .into_decoder()
        .ok()?;
    let (width, height) = decoder.dimensions();
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let decoded_colour = match decoder.color_type().channel_count() {
        1 => ColourMode::Grey,
        2 => ColourMode::GreyAlpha,
        4 => ColourMode::Rgba,
        _ => ColourMode::Rgb,
    };
    let (density, colour) = match sniffed {
        Sniffed::Jpeg => (jpeg_density(bytes), jpeg_colour(bytes)),
        Sniffed::Png => (png_density(bytes), png_colour(bytes)),
        _ => (Density::None, Some(decoded_colour)),
    };
    Some(Facts {
        format: None,
        content_type: sniffed.content_type(),
        width,
        height,
        density,
        colour,
        orientation,
        image: bytes.to_vec(),
    })
}

/// JFIF APP0 density: unit 1 is dots per inch, 2 dots per centimetre, 0 an aspect ratio only.
fn jpeg_density(jpeg: &[u8]) -> Density {
    let Some((payload, _)) = jfif_segment(jpeg) else {
        return Density::None;
    };
    let field = |at: usize| jpeg.get(payload + at).copied().unwrap_or(0);
    let x = u32::from(u16::from_be_bytes([field(8), field(9)]));
    let y = u32::from(u16::from_be_bytes([field(10), field(11)]));
    match field(7) {
        1 => Density::Dpi(x, y),
        2 => Density::Dpi((x * 254 + 50) / 100, (y * 254 + 50) / 100),
        _ => Density::None,
    }
}

/// The component count of the JPEG's frame header (SOFn): 1 grey, 3 colour, 4 CMYK/YCCK.
fn jpeg_colour(jpeg: &[u8]) -> Option<ColourMode> {
    let mut at = 2;
    while at + 4 <= jpeg.len() {
        if jpeg[at] != 0xFF {
            return None;
        }
        let marker = jpeg[at + 1];
        if marker == 0xFF {
            at += 1;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            return match jpeg.get(at + 9)? {
                1 => Some(ColourMode::Grey),
                3 => Some(ColourMode::Rgb),
                4 => Some(ColourMode::Cmyk),
                _ => None,
            };
        }
        at += 2 + len;
    }
    None
}

/// A PNG's pHYs chunk, when its unit is the metre.
fn png_density(png: &[u8]) -> Density {
    let mut at = PNG_MAGIC.len();
    while let Some(len) = png
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .and_then(|l| usize::try_from(l).ok())
    {
        let kind = png.get(at + 4..at + 8);
        let data = png.get(at + 8..at + 8 + len);
        match (kind, data) {
            (Some(b"pHYs"), Some(d)) if d.len() == 9 && d[8] == 1 => {
                let x = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                let y = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                let dpi = |ppm| u32::try_from(ppm_to_dpi(ppm)).unwrap_or(u32::MAX);
                return Density::Dpi(dpi(x), dpi(y));
            }
            (Some(b"IDAT" | b"IEND"), _) | (None, _) | (_, None) => return Density::None,
            _ => at += 12 + len,
        }
    }
    Density::None
}

/// The IHDR colour type (PNG specification, section 11.2.2).
fn png_colour(png: &[u8]) -> Option<ColourMode> {
    match png.get(25)? {
        0 => Some(ColourMode::Grey),
        2 => Some(ColourMode::Rgb),
        3 => Some(ColourMode::Palette),
        4 => Some(ColourMode::GreyAlpha),
        6 => Some(ColourMode::Rgba),
        _ => None,
    }
}

/// A PDF page showing one JPEG (as portals' document rules and our own PDFs have it): the JPEG's
/// facts, with the DPI the page size implies (pixels per inch of `/MediaBox`, 72 points an inch).
fn read_pdf(pdf: &[u8]) -> Option<Facts> {
    let image = find(pdf, b"/Subtype /Image", 0)?;
    find(pdf, b"/Filter /DCTDecode", image)?;
    let length_at = find(pdf, b"/Length ", image)? + b"/Length ".len();
    let length: usize = number_at(pdf, length_at)?.parse().ok()?;
    let start = find(pdf, b"stream", length_at)? + b"stream".len();
    // The stream keyword ends with CRLF or LF (PDF 32000-1, 7.3.8.1).
    let start = start + usize::from(pdf.get(start) == Some(&b'\r')) + 1;
    let jpeg = pdf.get(start..start.checked_add(length)?)?;
    let mut facts = read_image(jpeg, sniff_image(jpeg)?)?;
    facts.format = Some(OutputFormat::Pdf);
    facts.content_type = OutputFormat::Pdf.content_type();
    facts.density = media_box(pdf).map_or(Density::None, |(w, h)| {
        let per_inch = |px: u32, pt: f64| (f64::from(px) * 72.0 / pt).round() as u32;
        Density::Dpi(per_inch(facts.width, w), per_inch(facts.height, h))
    });
    Some(facts)
}

/// The page's width and height in points, from `/MediaBox [0 0 w h]`.
fn media_box(pdf: &[u8]) -> Option<(f64, f64)> {
    let at = find(pdf, b"/MediaBox", 0)?;
    let open = find(pdf, b"[", at)?;
    let close = find(pdf, b"]", open)?;
    let text = std::str::from_utf8(&pdf[open + 1..close]).ok()?;
    let n: Vec<f64> = text
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    match n.as_slice() {
        [x0, y0, x1, y1] if x1 > x0 && y1 > y0 => Some((x1 - x0, y1 - y0)),
        _ => None,
    }
}

fn number_at(bytes: &[u8], at: usize) -> Option<&str> {
    let digits = bytes
        .get(at..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(bytes.get(at..at + digits)?).ok()
}
