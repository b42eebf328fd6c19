//! What the tests of the photo rules framed by the face share: the models, loaded once, the
//! public-domain photos of `tests/fixtures/photos`, a JPEG encoder and the seeded rules.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;
use rythmiq_domain::PortalRule;
use rythmiq_pipeline::ocr::OcrStage;

/// The OCR engine, face detector and segmenter from the repository's `models/`.
pub fn stage() -> &'static OcrStage {
    static STAGE: OnceLock<OcrStage> = OnceLock::new();
    STAGE.get_or_init(|| {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        OcrStage::load(models, 1, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("models unavailable ({e}); run scripts/fetch-models.sh"))
    })
}

/// A photo of `tests/fixtures/photos`.
pub fn photo(name: &str) -> RgbImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/photos")
        .join(name);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_rgb8()
}

/// `img` as a quality-92 JPEG, as a phone would upload it.
pub fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 92)
        .encode_image(img)
        .unwrap();
    out
}

/// The seeded rule `slug`.
pub fn rule(slug: &str) -> PortalRule {
    rythmiq_shared::portals::find(slug).unwrap().unwrap()
}
