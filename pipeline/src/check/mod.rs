//! The check report: a file held against a portal rule as it is, nothing changed, one line per
//! requirement, in words a student understands ("212 KB; NEET allows 10–200 KB").
//!
//! Pure: bytes, a rule and (optionally) the OCR engine in, a [`Report`] out. The same report is
//! given for a student's own file (`rythmiq check`, `POST /v1/checks`) and for every output we
//! make, so what a requirement means is defined once, here and in [`crate::fit::verify`], whose
//! readers ([`file`]) it shares.
//!
//! A line's `passed` is `true`, `false`, or `null` when the line was not checked (its message
//! then starts with "not checked:" and says why). A report is compliant when no line failed.

mod file;
mod looks;
#[cfg(test)]
mod tests;

use image::metadata::Orientation;
use rythmiq_domain::{DocumentKind, OutputFormat, RuleSpec};
use serde::{Deserialize, Serialize};

use crate::decode::{self, DecodeLimits};
use crate::ocr::OcrStage;
use file::{ColourMode, Density, Facts};
pub(crate) use looks::background_line;
pub use looks::{face_lines, face_lines_placed, text_lines};

/// One requirement of the rule and how the file meets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Which requirement: `format`, `pixels`, `dpi`, `size`, `colour`, `orientation`,
    /// `background`, `face`, `face_height`, `face_centre`, `text`, `capitals`.
    pub rule: String,
    /// `Some(true)` met, `Some(false)` not met, `None` not checked (see `message`).
    pub passed: Option<bool>,
    /// What the rule asks, e.g. `10–200 KB`.
    pub expected: String,
    /// What the file has, e.g. `212 KB`.
    pub found: String,
    /// One sentence for the student.
    pub message: String,
}

impl Line {
    pub(crate) fn new(
        rule: &str,
        passed: Option<bool>,
        expected: impl Into<String>,
        found: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            rule: rule.to_owned(),
            passed,
            expected: expected.into(),
            found: found.into(),
            message: message.into(),
        }
    }

    /// A line that was not checked, saying why.
    pub fn not_checked(rule: &str, expected: impl Into<String>, why: &str) -> Self {
        Self::new(rule, None, expected, "", format!("not checked: {why}"))
    }
}

/// A file checked against one portal rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The rule's slug.
    pub portal: String,
    /// No line failed (lines not checked do not count against it).
    pub compliant: bool,
    pub checks: Vec<Line>,
}

impl Report {
    fn new(portal: &str, checks: Vec<Line>) -> Self {
        Self {
            portal: portal.to_owned(),
            compliant: checks.iter().all(|l| l.passed != Some(false)),
            checks,
        }
    }

    /// The line for requirement `rule`, if the report has one.
    pub fn line(&self, rule: &str) -> Option<&Line> {
        self.checks.iter().find(|l| l.rule == rule)
    }

    /// The requirements that failed, in report order.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|l| l.passed == Some(false))
            .map(|l| l.rule.as_str())
            .collect()
    }
}

/// Whether checking against `rule` needs the models [`OcrStage`] holds: lines that read text,
/// or a photo's face lines (so the caller loads them).
pub fn needs_models(rule: &RuleSpec) -> bool {
    looks::reads_text(rule) || rule.kind == rythmiq_domain::DocumentKind::Photo
}

/// Why a file could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file is no image we can read (nor a PDF showing one).
    #[error("the file cannot be read as an image: {0}")]
    Unreadable(String),
}

/// Checks `bytes` (named `file_name`, when it has a name: its extension is part of the format
/// line) against `rule`. With `ocr`, the lines that need reading text are checked too.
pub fn check(
    bytes: &[u8],
    file_name: Option<&str>,
    rule: &RuleSpec,
    ocr: Option<&OcrStage>,
) -> Result<Report, CheckError> {
    check_placed(bytes, file_name, rule, ocr, None)
}

/// [`check`] of a photo the pipeline framed, whose face is where the framing put it (`placed`,
/// [`crate::Processed::face`]): the face lines measure that face instead of detecting it again,
/// which would cost a photo job a third detection.
pub fn check_placed(
    bytes: &[u8],
    file_name: Option<&str>,
    rule: &RuleSpec,
    ocr: Option<&OcrStage>,
    placed: Option<&rythmiq_face::Face>,
) -> Result<Report, CheckError> {
    let facts = file::read(bytes).ok_or_else(|| {
        CheckError::Unreadable("it is not a JPEG, PNG, WebP, TIFF, BMP, GIF, HEIC or PDF".into())
    })?;
    let image = decode::decode(&facts.image, &DecodeLimits::default())
        .map_err(|e| CheckError::Unreadable(e.to_string()))?
        .into_rgb8();
    let (width, height) = if facts.width == 0 {
        // HEIC: its size comes from the decode (which applied its rotation).
        image.dimensions()
    } else {
        (facts.width, facts.height)
    };
    let facts = Facts {
        width,
        height,
        ..facts
    };
    let who = portal_name(rule);
    let mut lines = vec![
        format_line(&facts, file_name, rule, who),
        pixels_line(&facts, rule),
        dpi_line(&facts, rule),
        size_line(bytes.len(), rule, who),
        colour_line(&facts, rule),
        orientation_line(&facts, rule),
        looks::background_line(&image, rule),
    ];
    lines.extend(face_lines_placed(&image, rule, ocr, placed));
    lines.extend(text_lines(&image, rule, ocr));
    Ok(Report::new(&rule.slug, lines))
}

/// The portal's short name for messages: the rule name up to its first " - " or " (".
fn portal_name(rule: &RuleSpec) -> &str {
    let end = [" - ", " ("]
        .iter()
        .filter_map(|sep| rule.name.find(sep))
        .min()
        .unwrap_or(rule.name.len());
    &rule.name[..end]
}

fn extension_fits(name: &str, format: OutputFormat) -> bool {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match format {
        OutputFormat::Jpeg => ext == "jpg" || ext == "jpeg",
        OutputFormat::Png => ext == "png",
        OutputFormat::Pdf => ext == "pdf",
    }
}

fn format_line(facts: &Facts, name: Option<&str>, rule: &RuleSpec, who: &str) -> Line {
    let wanted = rule.format;
    let expected = format!("{} (.{})", wanted.content_type(), wanted.extension());
    let found = match name {
        Some(n) => format!("{} named {n:?}", facts.content_type),
        None => facts.content_type.to_owned(),
    };
    let label = |f: OutputFormat| match f {
        OutputFormat::Jpeg => "JPEG",
        OutputFormat::Png => "PNG",
        OutputFormat::Pdf => "PDF",
    };
    let (passed, message) = if facts.format != Some(wanted) {
        let is = facts
            .content_type
            .trim_start_matches("image/")
            .to_uppercase();
        match name.filter(|n| extension_fits(n, wanted)) {
            Some(n) => (
                false,
                format!(
                    "the file is really a {is} renamed to {n:?}; {who} needs a real {}",
                    label(wanted)
                ),
            ),
            None => (
                false,
                format!("the file is a {is}; {who} needs a {}", label(wanted)),
            ),
        }
    } else if let Some(n) = name.filter(|n| !extension_fits(n, wanted)) {
        (
            false,
            format!(
                "the file is a {} but named {n:?}; name it .{} so the portal accepts it",
                label(wanted),
                wanted.extension()
            ),
        )
    } else {
        (true, format!("a real {}, as {who} asks", label(wanted)))
    };
    Line::new("format", Some(passed), expected, found, message)
}

fn pixels_line(facts: &Facts, rule: &RuleSpec) -> Line {
    let (w, h) = (rule.width.unsigned_abs(), rule.height.unsigned_abs());
    let expected = format!("{w} × {h} px");
    let found = format!("{} × {} px", facts.width, facts.height);
    if (facts.width, facts.height) == (w, h) {
        Line::new(
            "pixels",
            Some(true),
            expected,
            found,
            format!("{w} × {h} pixels, as asked"),
        )
    } else {
        let message = format!(
            "the image is {} × {} pixels; this rule needs exactly {w} × {h}",
            facts.width, facts.height
        );
        Line::new("pixels", Some(false), expected, found, message)
    }
}

fn dpi_line(facts: &Facts, rule: &RuleSpec) -> Line {
    let want = rule.dpi.unsigned_abs();
    let expected = format!("{want} DPI");
    match facts.density {
        Density::None => Line::new(
            "dpi",
            Some(false),
            expected,
            "none written",
            format!("the file does not say its DPI; this rule needs {want} DPI written in it"),
        ),
        Density::Dpi(x, y) if x == want && y == want => Line::new(
            "dpi",
            Some(true),
            expected,
            format!("{x} DPI"),
            format!("{want} DPI, as asked"),
        ),
        Density::Dpi(x, y) => {
            let found = if x == y {
                format!("{x} DPI")
            } else {
                format!("{x} × {y} DPI")
            };
            let message = format!("the file says {found}; this rule needs {want} DPI");
            Line::new("dpi", Some(false), expected, found, message)
        }
    }
}

/// The byte window holds under both readings of a kilobyte: at least `min_kb × 1024` and at most
/// `max_kb × 1000` bytes ([`RuleSpec::byte_window`]), so a portal counting either way accepts it.
fn size_line(len: usize, rule: &RuleSpec, who: &str) -> Line {
    let (min, max) = rule.byte_window();
    let n = u64::try_from(len).unwrap_or(u64::MAX);
    let expected = format!("{}–{} KB ({min}–{max} bytes)", rule.min_kb, rule.max_kb);
    // The size as a student's file manager shows it (1 KB = 1,024 bytes), and in bytes.
    let kib = (n + 512) / 1024;
    let found = format!("{kib} KB ({n} bytes)");
    let allows = format!("{who} allows {}–{} KB", rule.min_kb, rule.max_kb);
    let (passed, message) = if n < min {
        (false, format!("{kib} KB; {allows} (at least {min} bytes)"))
    } else if n > max {
        (false, format!("{kib} KB; {allows} (at most {max} bytes)"))
    } else {
        (
            true,
            format!(
                "{kib} KB, inside the {}–{} KB window",
                rule.min_kb, rule.max_kb
            ),
        )
    };
    Line::new("size", Some(passed), expected, found, message)
}

/// Photos must be stored in RGB colour; signatures, thumbs and documents may be grey. CMYK (print
/// colour) and transparency are refused for all: browsers and portals show them wrongly.
fn colour_line(facts: &Facts, rule: &RuleSpec) -> Line {
    let photo = rule.kind == DocumentKind::Photo;
    let expected = if photo {
        "RGB colour"
    } else {
        "RGB colour or greyscale"
    };
    let Some(mode) = facts.colour else {
        return Line::not_checked(
            "colour",
            expected,
            "the file's colour model is not one we read",
        );
    };
    let passed = match mode {
        ColourMode::Rgb | ColourMode::Palette => true,
        ColourMode::Grey => !photo,
        ColourMode::Cmyk | ColourMode::GreyAlpha | ColourMode::Rgba => false,
    };
    let message = match (passed, mode) {
        (true, _) => format!("{}, as asked", mode.name()),
        (false, ColourMode::Cmyk) => {
            "the file is in CMYK (print) colour; save it as an RGB JPEG, which portals display"
                .to_owned()
        }
        (false, ColourMode::Grey) => {
            "the photo is greyscale; this rule needs a colour photograph".to_owned()
        }
        (false, _) => format!(
            "the file is {}; transparent areas show black or white depending on the portal",
            mode.name()
        ),
    };
    Line::new("colour", Some(passed), expected, mode.name(), message)
}

/// Stored upright (no EXIF rotation a portal might ignore) and the same shape as the rule:
/// portrait, landscape or square.
fn orientation_line(facts: &Facts, rule: &RuleSpec) -> Line {
    let shape = |w: u32, h: u32| match w.cmp(&h) {
        std::cmp::Ordering::Less => "portrait",
        std::cmp::Ordering::Equal => "square",
        std::cmp::Ordering::Greater => "landscape",
    };
    let (w, h) = (rule.width.unsigned_abs(), rule.height.unsigned_abs());
    let expected = format!("upright, {}", shape(w, h));
    let (fw, fh) = (facts.width, facts.height);
    if facts.orientation != Orientation::NoTransforms {
        let tag = exif_value(facts.orientation);
        return Line::new(
            "orientation",
            Some(false),
            expected,
            format!("stored turned, EXIF orientation {tag}"),
            format!(
                "the image is stored turned and only an EXIF tag ({tag}) sets it upright; \
                 many portals ignore the tag and show it sideways"
            ),
        );
    }
    let found = format!("upright, {}", shape(fw, fh));
    let wanted = shape(w, h);
    // A square rule takes any near-square file; the pixel line judges the exact size.
    if shape(fw, fh) == wanted {
        Line::new(
            "orientation",
            Some(true),
            expected,
            found,
            format!("upright and {wanted}"),
        )
    } else {
        let message = format!(
            "the image is {} ({fw} × {fh}); this rule needs {wanted} ({w} × {h})",
            shape(fw, fh)
        );
        Line::new("orientation", Some(false), expected, found, message)
    }
}

fn exif_value(o: Orientation) -> u8 {
    match o {
        Orientation::NoTransforms => 1,
        Orientation::FlipHorizontal => 2,
        Orientation::Rotate180 => 3,
        Orientation::FlipVertical => 4,
        Orientation::Rotate90FlipH => 5,
        Orientation::Rotate90 => 6,
        Orientation::Rotate270FlipH => 7,
        Orientation::Rotate270 => 8,
    }
}
