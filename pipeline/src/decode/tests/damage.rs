//! Damaged and hostile uploads: refused as damaged, or decoded with the warnings users need.

use super::*;

#[path = "../../../tests/support/hostile.rs"]
mod hostile;
use hostile::{Expect, animated_gif, animated_webp, corpus, jpeg_scan_damaged};

use super::super::jpeg_damage::{Ending, jpeg_ending};
use super::super::tiff_samples::MULTI_PAGE_WARNING;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn for_photo(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    decode_for_target_timed(bytes, &limits(), target(200, 230))
}

#[test]
fn every_corpus_file_gets_its_expected_outcome() {
    let mut wrong = Vec::new();
    for case in corpus(&fixtures()) {
        let got = for_photo(&case.bytes);
        let ok = match (&case.expect, &got) {
            (Expect::Empty, Err(e)) => *e == DecodeError::Empty,
            (Expect::Failed { code, message }, Err(e)) => {
                e.code().as_str() == *code && e.to_string().contains(message)
            }
            (Expect::Completed { warning }, Ok(d)) => {
                d.image.as_rgb8().is_some()
                    && match warning {
                        Some(w) => d.warnings.iter().any(|x| x.contains(w)),
                        None => d.warnings.is_empty(),
                    }
            }
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{}: expected {:?}, got {:?}",
                case.name,
                case.expect,
                got.map(|d| (d.image.width(), d.image.height(), d.warnings))
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The reported case: the first third of a real 512 × 512 photo, for a 200 × 230 portal photo,
/// used to come back as a photo whose lower part was flat grey.
#[test]
fn the_first_third_of_a_real_photo_is_refused_as_incomplete() {
    let jpeg = fixture("photos/astronaut.jpg");
    let err = for_photo(&jpeg[..jpeg.len() / 3]).unwrap_err();
    assert_eq!(err.code(), ErrorCode::DecodeFailed);
    let message = err.to_string();
    assert!(
        message.contains("JPEG file is incomplete or damaged"),
        "{message}"
    );
    assert!(message.contains("cut short"), "{message}");
}

#[test]
fn the_end_of_a_jpeg_is_found_by_walking_its_markers() {
    let jpeg = fixture("photos/astronaut.jpg");
    assert_eq!(jpeg_ending(&jpeg), Ending::Complete);
    for cut in [3, 100, jpeg.len() / 2, jpeg.len() - 2, jpeg.len() - 1] {
        assert_eq!(jpeg_ending(&jpeg[..cut]), Ending::Truncated, "cut at {cut}");
    }
    // Whatever follows the EOI is not the image.
    let mut appended = jpeg.clone();
    appended.extend_from_slice(b"PK\x03\x04 and anything else");
    assert_eq!(jpeg_ending(&appended), Ending::Complete);
    // Progressive files have many scans and tables between them.
    assert_eq!(jpeg_ending(&fixture("progressive.jpg")), Ending::Complete);
    assert_eq!(
        jpeg_ending(&fixture("cmyk-ycck-progressive.jpg")),
        Ending::Complete
    );
    // Garbage where a marker should be: the decoders judge it.
    let mut garbage = jpeg[..20].to_vec();
    garbage.extend_from_slice(b"not a marker");
    assert_eq!(jpeg_ending(&garbage), Ending::Unknown);
}

#[test]
fn sound_jpegs_decode_to_exactly_the_pixels_image_gives() {
    for name in [
        "photos/astronaut.jpg",
        "photos/coffee.jpg",
        "progressive.jpg",
    ] {
        let bytes = fixture(name);
        let ours = decode(&bytes, &limits()).unwrap().into_rgb8();
        let theirs = image::load_from_memory(&bytes).unwrap().into_rgb8();
        assert!(ours == theirs, "{name}");
    }
    // Grey JPEGs too.
    let grey = DynamicImage::ImageRgb8(photo(64, 48)).into_luma8();
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(&grey)
        .unwrap();
    let ours = decode(&bytes, &limits()).unwrap().into_rgb8();
    let theirs = image::load_from_memory(&bytes).unwrap().into_rgb8();
    assert!(ours == theirs);
}

#[test]
fn damaged_scan_data_is_refused_on_the_reduced_path_too() {
    // 2400 × 1800 for a 200 × 230 target decodes at 1/4 scale through libjpeg-turbo.
    let big = jpeg_bytes(&photo(2400, 1800));
    assert!(for_photo(&big).is_ok());
    let err = for_photo(&jpeg_scan_damaged(&big)).unwrap_err();
    assert!(matches!(err, DecodeError::Damaged { .. }), "{err}");
    // And on the full-size path (no target).
    let err = decode(&jpeg_scan_damaged(&big), &limits()).unwrap_err();
    assert!(matches!(err, DecodeError::Damaged { .. }), "{err}");
}

#[test]
fn float_tiff_with_two_pages_decodes_its_first_page_with_a_warning() {
    // scikit-image's `multipage_rgb.tif`: two 10 × 10 RGB pages of 64-bit floats, which `image`
    // refuses ("Unhandled TIFF sample format 3 for 64 bits").
    let bytes = fixture("multipage_rgb.tif");
    assert!(image::load_from_memory(&bytes).is_err());
    let decoded = for_photo(&bytes).unwrap();
    assert_eq!((decoded.image.width(), decoded.image.height()), (10, 10));
    assert_eq!(decoded.warnings, vec![MULTI_PAGE_WARNING.to_owned()]);
}

#[test]
fn float_and_sixteen_bit_tiff_samples_are_scaled_to_eight_bits() {
    use tiff::encoder::{TiffEncoder, colortype};

    let (w, h) = (8u32, 4u32);
    // 64-bit floats in [0, 1] and in [0, 255], 16-bit and signed 16-bit integers.
    let ramp = |scale: f64| -> Vec<f64> {
        (0..w * h * 3)
            .map(|i| f64::from(i % 3) * 0.5 * scale)
            .collect()
    };
    let mut unit = Cursor::new(Vec::new());
    TiffEncoder::new(&mut unit)
        .unwrap()
        .write_image::<colortype::RGB64Float>(w, h, &ramp(1.0))
        .unwrap();
    let mut wide = Cursor::new(Vec::new());
    TiffEncoder::new(&mut wide)
        .unwrap()
        .write_image::<colortype::RGB64Float>(w, h, &ramp(255.0))
        .unwrap();
    for bytes in [unit.into_inner(), wide.into_inner()] {
        let img = decode(&bytes, &limits()).unwrap().into_rgb8();
        assert_eq!(img.get_pixel(3, 2).0, [0, 128, 255]);
    }
    let sixteen: Vec<u16> = (0..w * h * 3)
        .map(|i| [0, 0x8000, 0xFFFF][(i % 3) as usize])
        .collect();
    let mut bytes = Cursor::new(Vec::new());
    TiffEncoder::new(&mut bytes)
        .unwrap()
        .write_image::<colortype::RGB16>(w, h, &sixteen)
        .unwrap();
    let img = decode(&bytes.into_inner(), &limits()).unwrap().into_rgb8();
    assert_eq!(img.get_pixel(1, 1).0, [0, 128, 255]);
    let signed: Vec<i16> = (0..w * h)
        .map(|i| [i16::MIN, 0, i16::MAX][(i % 3) as usize])
        .collect();
    let mut bytes = Cursor::new(Vec::new());
    TiffEncoder::new(&mut bytes)
        .unwrap()
        .write_image::<colortype::GrayI16>(w, h, &signed)
        .unwrap();
    let img = decode(&bytes.into_inner(), &limits()).unwrap().into_rgb8();
    assert_eq!(
        [
            img.get_pixel(0, 0).0[0],
            img.get_pixel(1, 0).0[0],
            img.get_pixel(2, 0).0[0]
        ],
        [0, 128, 255]
    );
}

#[test]
fn a_multi_page_eight_bit_tiff_warns_too() {
    use tiff::encoder::{TiffEncoder, colortype};

    let red: Vec<u8> = [200u8, 20, 20].repeat(16 * 16);
    let blue: Vec<u8> = [20u8, 20, 200].repeat(16 * 16);
    let mut bytes = Cursor::new(Vec::new());
    let mut encoder = TiffEncoder::new(&mut bytes).unwrap();
    encoder
        .write_image::<colortype::RGB8>(16, 16, &red)
        .unwrap();
    encoder
        .write_image::<colortype::RGB8>(16, 16, &blue)
        .unwrap();
    let decoded = for_photo(&bytes.into_inner()).unwrap();
    assert_near(decoded.image.as_rgb8().unwrap(), 8, 8, [200, 20, 20], 0);
    assert_eq!(decoded.warnings, vec![MULTI_PAGE_WARNING.to_owned()]);
}

#[test]
fn animations_give_their_first_frame_and_a_warning() {
    let red = image::RgbaImage::from_pixel(16, 16, Rgba([230, 30, 30, 255]));
    let blue = image::RgbaImage::from_pixel(16, 16, Rgba([30, 30, 230, 255]));
    for (what, bytes) in [
        ("GIF", animated_gif(&[red.clone(), blue.clone()])),
        ("WebP", animated_webp(&[red.clone(), blue.clone()])),
    ] {
        let decoded = for_photo(&bytes).unwrap();
        assert_near(decoded.image.as_rgb8().unwrap(), 8, 8, [230, 30, 30], 4);
        assert_eq!(
            decoded.warnings,
            vec![format!(
                "the {what} file is animated; only its first frame was used"
            )]
        );
        // A still picture: no warning.
        let still = if what == "GIF" {
            animated_gif(std::slice::from_ref(&red))
        } else {
            let mut still = Cursor::new(Vec::new());
            DynamicImage::ImageRgba8(red.clone())
                .write_to(&mut still, image::ImageFormat::WebP)
                .unwrap();
            still.into_inner()
        };
        assert!(for_photo(&still).unwrap().warnings.is_empty(), "{what}");
    }
}
