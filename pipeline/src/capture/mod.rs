//! CAPTURE (documents only): a phone photograph of a page becomes the page itself.
//!
//! [`page`] finds the page's four corners, [`warp`] flattens it to an upright rectangle with the
//! page's own proportions, [`light`] evens out the lighting (shadows and colour casts out, paper
//! white, ink dark, colours kept). What follows — QUALITY, ENHANCE, the document's OCR and the
//! fit onto the rule's page at its DPI — then works on the page, not on the desk around it.
//!
//! A scan (the page fills the frame) passes unchanged. A photo in which no page edge stands out
//! is used whole, with a warning; so are the doubts the user can act on: a page cut off by the
//! frame, tilted too far to flatten well, or too small for the rule's DPI.

pub mod light;
pub mod page;
pub mod warp;

use image::RgbImage;
use rythmiq_domain::PortalRule;
use serde::Serialize;

/// Keystone (ratio of opposite sides − 1) beyond which the flattening is warned about: a phone
/// held more than ~25° off square, where one end of the page has far fewer pixels than the
/// other and its text reads worse than the rest.
pub const MAX_KEYSTONE: f32 = 0.3;

/// A flattened page smaller than this share of the rule's pixel size has its small print
/// upscaled past legibility at the rule's DPI.
pub const MIN_SCALE: f32 = 0.8;

/// Measured aspect ratios this close to the rule's are taken as the rule's: perspective leaves
/// a percent or two of doubt, and snapping spares the fit a crop of the page's edge.
const ASPECT_SNAP: f32 = 0.04;

/// Share of each side trimmed after flattening: corners found on a blurred edge can leave a
/// sliver of desk along the border.
const TRIM: f32 = 0.005;

/// What CAPTURE did, reported with the job.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureReport {
    /// `"page"` (found and flattened), `"whole_frame"` (a scan: unchanged) or `"no_edge"` (no
    /// page found: the whole photo is used).
    pub outcome: &'static str,
    /// The page's corners in the photo (top-left, top-right, bottom-right, bottom-left).
    pub corners: Option<[[f32; 2]; 4]>,
    /// Size of the image the later stages get.
    pub width: u32,
    pub height: u32,
    /// Brightest over darkest paper before lighting was evened (1.0: already even).
    pub lighting_spread: Option<f32>,
}

/// Finds, flattens and evens out the page in `img` for `rule`; warnings go to `warnings`.
pub fn capture(
    img: RgbImage,
    rule: &PortalRule,
    warnings: &mut Vec<String>,
) -> (RgbImage, CaptureReport) {
    let unchanged = |img: RgbImage, outcome| {
        let (width, height) = img.dimensions();
        let report = CaptureReport {
            outcome,
            corners: None,
            width,
            height,
            lighting_spread: None,
        };
        (img, report)
    };
    let (corners, cut_off) = match page::find(&img) {
        page::Found::WholeFrame => return unchanged(img, "whole_frame"),
        page::Found::NoEdge => {
            warnings.push(
                "no page edge was found in the photo, so the whole photo is used: photograph \
                 the page on a plain, darker surface"
                    .to_owned(),
            );
            return unchanged(img, "no_edge");
        }
        page::Found::Page { corners, cut_off } => (corners, cut_off),
    };
    if cut_off {
        warnings
            .push("the page touches the edge of the photo: part of it may be cut off".to_owned());
    }
    let keystone = warp::keystone(&corners);
    if keystone > MAX_KEYSTONE {
        warnings.push(format!(
            "the page was photographed at a steep angle ({:.0} % narrower at one end) and may \
             not flatten well: photograph it from straight above",
            keystone * 100.0
        ));
    }
    let (w, mut h) = warp::flat_size(&corners);
    let (rw, rh) = (
        rule.width.unsigned_abs() as f32,
        rule.height.unsigned_abs() as f32,
    );
    // The rule's aspect, in the page's own orientation (a landscape card on a portrait rule
    // stays landscape here; the fit decides).
    let rule_aspect = if (h >= w) == (rh >= rw) {
        rh / rw
    } else {
        rw / rh
    };
    if ((h / w) / rule_aspect - 1.0).abs() < ASPECT_SNAP {
        h = w * rule_aspect;
    }
    let (ow, oh) = ((w.round() as u32).max(1), (h.round() as u32).max(1));
    let Some(flat) = warp::flatten(&img, &corners, ow, oh) else {
        warnings.push(
            "the page's corners could not be flattened, so the whole photo is used".to_owned(),
        );
        return unchanged(img, "no_edge");
    };
    let (tx, ty) = ((ow as f32 * TRIM) as u32, (oh as f32 * TRIM) as u32);
    let flat = image::imageops::crop_imm(&flat, tx, ty, ow - 2 * tx, oh - 2 * ty).to_image();
    let (small, large) = (w.min(h), w.max(h));
    if small < MIN_SCALE * rw.min(rh) || large < MIN_SCALE * rw.max(rh) {
        warnings.push(format!(
            "the page is only {ow}×{oh} pixels in the photo, less than the portal's {}×{} at {} \
             dpi: small print may not be legible; photograph it closer",
            rw, rh, rule.dpi
        ));
    }
    let (even, spread) = light::normalise(&flat);
    let (width, height) = even.dimensions();
    let report = CaptureReport {
        outcome: "page",
        corners: Some(corners),
        width,
        height,
        lighting_spread: Some(spread),
    };
    (even, report)
}
