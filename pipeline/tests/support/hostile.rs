//! A corpus of damaged and hostile uploads, each with the outcome a user must get, built from the
//! real images in `pipeline/tests/fixtures/` (see the README there) with the `image` crate only.
//! Shared by the decoder's unit tests (`src/decode/tests/damage.rs`) and the end-to-end test
//! through `rythmiq process` and the HTTP API (`tests/damaged_inputs.rs`), through `#[path]`.

// Each includer uses part of it.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;

use image::codecs::gif::GifEncoder;
use image::{Delay, DynamicImage, Frame, ImageFormat, Rgb32FImage, RgbaImage};

/// What a user must get for an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The job completes; its `warnings` contain this fragment when there is one.
    Completed { warning: Option<&'static str> },
    /// The job fails with this error code, its message containing this fragment.
    Failed {
        code: &'static str,
        message: &'static str,
    },
    /// The upload has no bytes: `rythmiq process` says `PAYLOAD_INVALID`, the API refuses it
    /// with 400 `PAYLOAD_MISSING` before any job exists.
    Empty,
}

/// One upload of the corpus.
#[derive(Debug, Clone)]
pub struct Case {
    /// A short name, also the upload's file name stem.
    pub name: String,
    /// The file name the upload is sent with (its extension may lie).
    pub filename: String,
    pub bytes: Vec<u8>,
    pub expect: Expect,
}

/// The fragment every message about a damaged file carries.
pub const DAMAGED: &str = "incomplete or damaged";

fn damaged() -> Expect {
    Expect::Failed {
        code: "DECODE_FAILED",
        message: DAMAGED,
    }
}

fn case(name: &str, ext: &str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name: name.to_owned(),
        filename: format!("{name}.{ext}"),
        bytes,
        expect,
    }
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .unwrap_or_else(|e| panic!("encoding {format:?}: {e}"));
    out.into_inner()
}

fn read(fixtures: &Path, name: &str) -> Vec<u8> {
    let path = fixtures.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The first `fraction` of `bytes`.
fn cut(bytes: &[u8], fraction: f64) -> Vec<u8> {
    let len = (bytes.len() as f64 * fraction) as usize;
    bytes[..len.clamp(1, bytes.len() - 1)].to_vec()
}

/// Where a JPEG's first scan's entropy-coded data starts (after its SOS segment).
pub fn jpeg_scan_start(jpeg: &[u8]) -> usize {
    let sos = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a JPEG has a scan");
    sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]))
}

/// `jpeg` with 64 bytes in the middle of its first scan overwritten: the bit errors of a bad
/// transfer or storage.
pub fn jpeg_scan_damaged(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let start = jpeg_scan_start(jpeg);
    let mid = start + (jpeg.len() - start) / 2;
    let mut seed = 0x2545_F491u32;
    for b in &mut out[mid..mid + 64] {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        // No 0xFF, so no marker is made up: the damage stays inside the entropy-coded data.
        *b = (seed % 255) as u8;
    }
    out
}

/// A RIFF chunk, padded to an even size.
fn riff_chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&u32::try_from(data.len()).expect("small").to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// An animated WebP (WebP container specification: VP8X, ANIM, one ANMF per frame) whose
/// frames are `image`'s lossless encodings of `frames`, all the canvas size.
pub fn animated_webp(frames: &[RgbaImage]) -> Vec<u8> {
    let (w, h) = frames[0].dimensions();
    let mut body = b"WEBP".to_vec();
    let mut vp8x = vec![0x02 | 0x10, 0, 0, 0]; // animation, alpha
    vp8x.extend_from_slice(&u24(w - 1));
    vp8x.extend_from_slice(&u24(h - 1));
    riff_chunk(&mut body, b"VP8X", &vp8x);
    riff_chunk(&mut body, b"ANIM", &[255, 255, 255, 255, 0, 0]);
    for frame in frames {
        let still = encode(&DynamicImage::ImageRgba8(frame.clone()), ImageFormat::WebP);
        // `RIFF size WEBP` then the VP8L chunk, which the frame carries as it is.
        let mut anmf = Vec::new();
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(w - 1));
        anmf.extend_from_slice(&u24(h - 1));
        anmf.extend_from_slice(&u24(100));
        anmf.push(0);
        anmf.extend_from_slice(&still[12..]);
        riff_chunk(&mut body, b"ANMF", &anmf);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&u32::try_from(body.len()).expect("small").to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A GIF of `frames`.
pub fn animated_gif(frames: &[RgbaImage]) -> Vec<u8> {
    let mut gif = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut gif);
        for f in frames {
            enc.encode_frame(Frame::from_parts(
                f.clone(),
                0,
                0,
                Delay::from_numer_denom_ms(100, 1),
            ))
            .expect("GIF frame");
        }
    }
    gif
}

/// `img` with its colours inverted: a second frame that differs everywhere.
fn inverted(img: &RgbaImage) -> RgbaImage {
    let mut out = img.clone();
    for p in out.pixels_mut() {
        for c in &mut p.0[..3] {
            *c = 255 - *c;
        }
    }
    out
}

/// The whole corpus. `fixtures` is `pipeline/tests/fixtures`.
pub fn corpus(fixtures: &Path) -> Vec<Case> {
    let astronaut_jpg = read(fixtures, "photos/astronaut.jpg");
    let astronaut = image::load_from_memory(&astronaut_jpg).expect("astronaut.jpg");
    let png = encode(&astronaut, ImageFormat::Png);
    let webp = encode(&astronaut, ImageFormat::WebP);
    let heic = read(fixtures, "card.heic");
    let cmyk_progressive = read(fixtures, "cmyk-ycck-progressive.jpg");
    let small =
        DynamicImage::ImageRgba8(image::imageops::thumbnail(&astronaut.to_rgba8(), 256, 256));
    let small_rgba = small.to_rgba8();

    let mut cases = Vec::new();
    // Truncated at several points: JPEG (the reported case is the first third), PNG, WebP, HEIC.
    for (pct, fraction) in [(10, 0.10), (33, 1.0 / 3.0), (66, 0.66), (99, 0.99)] {
        cases.push(case(
            &format!("jpeg-truncated-{pct}"),
            "jpg",
            cut(&astronaut_jpg, fraction),
            damaged(),
        ));
    }
    cases.push(case(
        "jpeg-without-eoi",
        "jpg",
        astronaut_jpg[..astronaut_jpg.len() - 2].to_vec(),
        damaged(),
    ));
    for (pct, fraction) in [(33, 1.0 / 3.0), (66, 0.66), (99, 0.99)] {
        cases.push(case(
            &format!("png-truncated-{pct}"),
            "png",
            cut(&png, fraction),
            damaged(),
        ));
        cases.push(case(
            &format!("webp-truncated-{pct}"),
            "webp",
            cut(&webp, fraction),
            damaged(),
        ));
    }
    for (pct, fraction) in [(50, 0.5), (90, 0.9), (99, 0.99)] {
        cases.push(case(
            &format!("heic-truncated-{pct}"),
            "heic",
            cut(&heic, fraction),
            damaged(),
        ));
    }
    cases.push(case(
        "cmyk-progressive-truncated",
        "jpg",
        cut(&cmyk_progressive, 0.7),
        damaged(),
    ));

    // Bit errors: in a JPEG's scan data, in its frame header, in a PNG's pixel data (its CRC no
    // longer matches) and in a PNG's header.
    cases.push(case(
        "jpeg-scan-bit-errors",
        "jpg",
        jpeg_scan_damaged(&astronaut_jpg),
        damaged(),
    ));
    let mut sof_flipped = astronaut_jpg.clone();
    let sof = sof_flipped
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF0");
    // The number of components, 3 → 0x43: the frame header no longer parses.
    sof_flipped[sof + 9] ^= 0x40;
    cases.push(case(
        "jpeg-header-bit-error",
        "jpg",
        sof_flipped,
        Expect::Failed {
            code: "DECODE_FAILED",
            message: "JPEG",
        },
    ));
    let mut png_data_flipped = png.clone();
    let idat = png_data_flipped
        .windows(4)
        .position(|w| w == b"IDAT")
        .expect("IDAT");
    png_data_flipped[idat + 4 + 100] ^= 0x10;
    cases.push(case(
        "png-data-bit-error",
        "png",
        png_data_flipped,
        damaged(),
    ));
    let mut png_header_flipped = png.clone();
    png_header_flipped[16 + 2] ^= 0x01; // IHDR width, so its CRC fails
    cases.push(case(
        "png-header-bit-error",
        "png",
        png_header_flipped,
        damaged(),
    ));

    // Lies and impostors.
    cases.push(case(
        "png-named-jpg",
        "jpg",
        encode(&small, ImageFormat::Png),
        Expect::Completed { warning: None },
    ));
    cases.push(case("zero-bytes", "jpg", Vec::new(), Expect::Empty));
    let mut jpeg_zip = astronaut_jpg.clone();
    jpeg_zip.extend_from_slice(b"PK\x03\x04\x14\0\0\0\x08\0secret.txt");
    jpeg_zip.extend_from_slice(&[0x55; 2000]);
    jpeg_zip.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0");
    cases.push(case(
        "jpeg-with-zip-appended",
        "jpg",
        jpeg_zip,
        Expect::Completed { warning: None },
    ));
    // Sniffs as HEIC (an `ftyp` box with the `heic` brand) and as JPEG (a whole JPEG after it).
    let mut heic_jpeg = vec![0, 0, 0, 24];
    heic_jpeg.extend_from_slice(b"ftypheic\0\0\0\0mif1heic");
    heic_jpeg.extend_from_slice(&astronaut_jpg);
    cases.push(case(
        "heic-jpeg-polyglot",
        "heic",
        heic_jpeg,
        Expect::Failed {
            code: "DECODE_FAILED",
            message: "HEIF",
        },
    ));

    // Unusual but sound: 16-bit and float TIFF, multi-page TIFF, CMYK progressive JPEG,
    // animated GIF and WebP.
    cases.push(case(
        "tiff-16-bit",
        "tif",
        encode(
            &DynamicImage::ImageRgb16(small.to_rgb16()),
            ImageFormat::Tiff,
        ),
        Expect::Completed { warning: None },
    ));
    let float: Rgb32FImage = small.to_rgb32f();
    cases.push(case(
        "tiff-float-32",
        "tif",
        encode(&DynamicImage::ImageRgb32F(float), ImageFormat::Tiff),
        Expect::Completed { warning: None },
    ));
    cases.push(case(
        "tiff-float-64-multi-page",
        "tif",
        read(fixtures, "multipage_rgb.tif"),
        Expect::Completed {
            warning: Some("more than one page"),
        },
    ));
    cases.push(case(
        "cmyk-progressive",
        "jpg",
        cmyk_progressive,
        Expect::Completed { warning: None },
    ));
    let frames = [small_rgba.clone(), inverted(&small_rgba)];
    cases.push(case(
        "gif-animated",
        "gif",
        animated_gif(&frames),
        Expect::Completed {
            warning: Some("animated"),
        },
    ));
    cases.push(case(
        "webp-animated",
        "webp",
        animated_webp(&frames),
        Expect::Completed {
            warning: Some("animated"),
        },
    ));
    cases
}
