//! The portal rules of `portal-rules/` (one TOML file per rule; its README gives the format).
//! They are compiled into the binary, for `rythmiq process` (no database), and
//! [`crate::db::migrate`] loads them into `portal_schemas`, so both read the same files.

use chrono::NaiveDate;
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::{PortalRule, RuleSpec};
use crate::{Error, Result};

// `FILES`: every `portal-rules/*.toml` as (file name, contents), listed by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/portal_rules.rs"));

/// One rule as its file states it: the values jobs are fitted to (the file's top-level keys)
/// and where they come from (its `[source]` table).
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    pub spec: RuleSpec,
    pub source: Source,
}

/// Where a rule's values come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The public page the values were checked against (stored as `source_url`).
    pub url: String,
    /// When the values were last checked against it (stored as `source_checked_on`).
    #[serde(deserialize_with = "toml_date")]
    pub checked: NaiveDate,
    /// Further public pages that corroborate the values, or disagree and say how (file only).
    #[serde(default)]
    pub also: Vec<String>,
    /// Which of the rule's values ([`VALUE_KEYS`]) the portal itself states; the others are
    /// ours, chosen where the portal states none (stored as `source_portal_values`).
    pub portal_values: Vec<String>,
}

/// The keys of a rule's values a portal may or may not state, in file order.
pub const VALUE_KEYS: [&str; 7] = [
    "width",
    "height",
    "dpi",
    "format",
    "min_kb",
    "max_kb",
    "background",
];

impl Source {
    /// The values the portal states, in [`VALUE_KEYS`] order.
    pub fn portal_values(&self) -> Vec<&'static str> {
        VALUE_KEYS
            .into_iter()
            .filter(|k| self.portal_values.iter().any(|v| v == k))
            .collect()
    }

    /// The values that are ours (the portal states none), in [`VALUE_KEYS`] order.
    pub fn our_values(&self) -> Vec<&'static str> {
        VALUE_KEYS
            .into_iter()
            .filter(|k| !self.portal_values.iter().any(|v| v == k))
            .collect()
    }
}

/// A TOML local date (`checked = 2026-11-29`): not a string, and no time or offset.
fn toml_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    use serde::de::Error as _;
    let dt = toml::value::Datetime::deserialize(d)?;
    match (dt.date, dt.time, dt.offset) {
        (Some(date), None, None) => NaiveDate::from_ymd_opt(
            i32::from(date.year),
            u32::from(date.month),
            u32::from(date.day),
        )
        .ok_or_else(|| D::Error::custom(format!("{dt} is not a calendar date"))),
        _ => Err(D::Error::custom(format!(
            "expected a plain date such as 2026-11-29, found {dt}"
        ))),
    }
}

impl RuleFile {
    /// Parses the contents of `portal-rules/<file>` and checks it is a rule the database
    /// accepts (the same bounds as `portal_schemas`' constraints), named after its slug.
    pub fn parse(file: &str, text: &str) -> Result<Self> {
        let syntax = |source| Error::PortalRuleFile {
            file: file.to_owned(),
            source,
        };
        // The spec refuses unknown keys itself, so it is read from the file's table without
        // `[source]` (serde's `flatten` would let unknown keys through); `[source]` is read
        // from the text, where its date is still a TOML date.
        #[derive(Deserialize)]
        struct SourceOnly {
            source: Source,
        }
        let SourceOnly { source } = toml::from_str(text).map_err(syntax)?;
        let mut table: toml::Table = toml::from_str(text).map_err(syntax)?;
        table.remove("source");
        let rule = RuleFile {
            spec: table.try_into().map_err(syntax)?,
            source,
        };
        rule.check(file)
            .map_err(|reason| Error::PortalRuleInvalid {
                file: file.to_owned(),
                reason,
            })?;
        Ok(rule)
    }

    fn check(&self, file: &str) -> std::result::Result<(), String> {
        let spec = &self.spec;
        if file.strip_suffix(".toml") != Some(spec.slug.as_str()) {
            return Err(format!(
                "the slug {:?} must be the file name without `.toml`",
                spec.slug
            ));
        }
        let slug_ok = !spec.slug.is_empty()
            && spec
                .slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !slug_ok {
            return Err(format!(
                "the slug {:?} may hold only a-z, 0-9 and '-'",
                spec.slug
            ));
        }
        for (what, value) in [
            ("name", &spec.name),
            ("filename_pattern", &spec.filename_pattern),
            ("background", &spec.background),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{what} is empty"));
            }
        }
        for (what, value, range) in [
            ("width", spec.width, 16..=10_000),
            ("height", spec.height, 16..=10_000),
            ("dpi", spec.dpi, 50..=1200),
        ] {
            if !range.contains(&value) {
                return Err(format!("{what} {value} is outside {range:?}"));
            }
        }
        if spec.min_kb < 0 || spec.min_kb >= spec.max_kb {
            return Err(format!(
                "min_kb {} and max_kb {} must satisfy 0 <= min_kb < max_kb",
                spec.min_kb, spec.max_kb
            ));
        }
        for (i, key) in self.source.portal_values.iter().enumerate() {
            if !VALUE_KEYS.contains(&key.as_str()) {
                return Err(format!(
                    "portal_values names {key:?}, not one of {VALUE_KEYS:?}"
                ));
            }
            if self.source.portal_values[..i].contains(key) {
                return Err(format!("portal_values names {key:?} twice"));
            }
        }
        if let Some(face) = &spec.face {
            if !face.is_valid() {
                return Err(format!(
                    "[face] {face:?}: bands must be 0 < lowest <= highest <= 1 and the centre \
                     tolerance below 0.5"
                ));
            }
            if spec.kind != crate::domain::DocumentKind::Photo {
                return Err("[face] is only for photo rules".to_owned());
            }
        }
        for url in std::iter::once(&self.source.url).chain(&self.source.also) {
            if !url.starts_with("https://") || url.contains(char::is_whitespace) {
                return Err(format!("{url:?} is not a public https:// address"));
            }
        }
        Ok(())
    }

    /// The rule as jobs use it, with the row id and version the caller assigns.
    pub fn to_rule(&self, id: Uuid, version: i32) -> PortalRule {
        PortalRule {
            id,
            version,
            spec: self.spec.clone(),
        }
    }
}

/// Every rule file compiled into this build, in file-name order.
pub fn files() -> Result<Vec<RuleFile>> {
    FILES
        .iter()
        .map(|(file, text)| RuleFile::parse(file, text))
        .collect()
}

/// Every compiled-in rule, in slug order. These have no database row: the id is a placeholder
/// stable within a build and the version is 0; the database assigns both (see
/// [`crate::db::load_portal_rules`]).
pub fn builtin() -> Result<Vec<PortalRule>> {
    let mut rules: Vec<PortalRule> = files()?
        .iter()
        .enumerate()
        .map(|(i, f)| f.to_rule(Uuid::from_u128(i as u128 + 1), 0))
        .collect();
    // File-name order is not slug order where one slug extends another ('-' sorts before '.').
    rules.sort_by(|a, b| a.slug.cmp(&b.slug));
    Ok(rules)
}

/// The built-in rule for `slug`.
pub fn find(slug: &str) -> Result<Option<PortalRule>> {
    Ok(builtin()?.into_iter().find(|r| r.slug == slug))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DocumentKind, OutputFormat};

    /// The rule set the binary carried before the rules moved to `portal-rules/`, as
    /// (slug, name, kind, width, height, dpi, format, min_kb, max_kb, filename_pattern,
    /// background, source url).
    #[allow(clippy::type_complexity)]
    const BEFORE: [(
        &str,
        &str,
        DocumentKind,
        i32,
        i32,
        i32,
        OutputFormat,
        i32,
        i32,
        &str,
        &str,
        &str,
    ); 9] = {
        use DocumentKind::*;
        use OutputFormat::*;
        [
            (
                "neet-ug-2026-photo",
                "NEET (UG) 2026 - Passport-size photograph",
                Photo,
                200,
                230,
                200,
                Jpeg,
                10,
                100,
                "neet_photo_{job_id}",
                "white",
                "https://www.financialexpress.com/jobs-career/education-neet-ug-2026-registration-to-close-soon-check-nta-guidelines-to-upload-image-signature-key-details-4164099/",
            ),
            (
                "neet-ug-2026-signature",
                "NEET (UG) 2026 - Signature",
                Signature,
                413,
                177,
                300,
                Jpeg,
                10,
                30,
                "neet_signature_{job_id}",
                "white",
                "https://www.pw.live/news/neet-ug-2026-registration-documents-required-size-format-nta",
            ),
            (
                "jee-main-2026-photo",
                "JEE (Main) 2026 - Photograph",
                Photo,
                413,
                531,
                300,
                Jpeg,
                10,
                200,
                "jee_main_photo_{job_id}",
                "white",
                "https://education.indianexpress.com/news/jee-main-2026-application-form-closing-on-november-27-check-image-specifications-instructions-for-password-2518256",
            ),
            (
                "jee-main-2026-signature",
                "JEE (Main) 2026 - Signature",
                Signature,
                413,
                177,
                300,
                Jpeg,
                10,
                100,
                "jee_main_signature_{job_id}",
                "white",
                "https://education.indianexpress.com/news/jee-main-2026-application-form-closing-on-november-27-check-image-specifications-instructions-for-password-2518256",
            ),
            (
                "passport-india-photo",
                "Passport Seva (India) - Applicant photograph",
                Photo,
                630,
                810,
                457,
                Jpeg,
                10,
                250,
                "passport_photo_{job_id}",
                "white",
                "https://www.photopass.ai/blog/630x810-pixel-photo-indian-passport",
            ),
            (
                "ibps-2026-photo",
                "IBPS CRP 2026 - Photograph",
                Photo,
                200,
                230,
                200,
                Jpeg,
                20,
                50,
                "ibps_photo_{job_id}",
                "light",
                "https://guidely.in/blog/ibps-po-photo-and-signature-size",
            ),
            (
                "ibps-2026-signature",
                "IBPS CRP 2026 - Signature",
                Signature,
                140,
                60,
                200,
                Jpeg,
                10,
                20,
                "ibps_signature_{job_id}",
                "white",
                "https://guidely.in/blog/ibps-po-photo-and-signature-size",
            ),
            (
                "aadhaar-update-document",
                "UIDAI Aadhaar update - Supporting document",
                Document,
                1240,
                1754,
                150,
                Pdf,
                0,
                2000,
                "aadhaar_document_{job_id}",
                "any",
                "https://en.vikaspedia.in/e-governance/online-citizen-services/government-to-citizen-services-g2c/all-about-aadhaar/update-your-aadhaar-data",
            ),
            (
                "college-generic-photo",
                "College admission (generic) - Passport-size photograph",
                Photo,
                413,
                531,
                300,
                Jpeg,
                20,
                200,
                "college_photo_{job_id}",
                "light",
                "https://dev.to/passportsizephoto/document-photos-are-specified-in-millimetres-your-canvas-works-in-pixels-5ab7",
            ),
        ]
    };

    /// The rules added since, each with its own values and source.
    const ADDED: [&str; 3] = [
        "ibps-2026-declaration",
        "ibps-2026-thumb",
        "neet-ug-2026-photo-postcard",
    ];

    const VALID: &str = r#"
slug = "x-photo"
name = "X"
kind = "photo"
width = 200
height = 230
dpi = 200
format = "jpeg"
min_kb = 10
max_kb = 100
filename_pattern = "x_{job_id}"
background = "white"

[source]
url = "https://example.org/x"
checked = 2026-11-29
portal_values = ["format", "max_kb"]
"#;

    const FACE: &str = "[face]\nhead_height = [0.70, 0.80]\neye_line = [0.50, 0.70]\n\
                        centre_tolerance = 0.05\n\n[source]";

    #[test]
    fn a_face_table_is_read_and_the_id_photo_rules_have_one() -> Result<()> {
        let f = RuleFile::parse("x-photo.toml", &VALID.replace("[source]", FACE))?;
        let face = f.spec.face.ok_or_else(|| Error::Config("no face".into()))?;
        assert_eq!(face.head_height, [0.70, 0.80]);
        assert_eq!(face.eye_line, [0.50, 0.70]);
        assert_eq!(RuleFile::parse("x-photo.toml", VALID)?.spec.face, None);
        for slug in [
            "passport-india-photo",
            "neet-ug-2026-photo",
            "jee-main-2026-photo",
        ] {
            let rule = find(slug)?.ok_or_else(|| Error::Config(slug.into()))?;
            assert!(rule.face.is_some_and(|f| f.is_valid()), "{slug}");
        }
        // Rules that ask nothing about the face keep accepting any photo.
        for slug in ["ibps-2026-photo", "college-generic-photo"] {
            assert_eq!(find(slug)?.and_then(|r| r.face), None, "{slug}");
        }
        Ok(())
    }

    #[test]
    fn every_file_parses_and_is_named_after_its_slug() -> Result<()> {
        // `files()` stops at the first bad file; this names every one.
        let bad: Vec<String> = FILES
            .iter()
            .filter_map(|(file, text)| RuleFile::parse(file, text).err())
            .map(|e| e.to_string())
            .collect();
        assert!(bad.is_empty(), "{bad:#?}");
        assert_eq!(files()?.len(), FILES.len());
        Ok(())
    }

    #[test]
    fn the_files_hold_the_rule_set_the_binary_had_before() -> Result<()> {
        let files = files()?;
        let mut slugs: Vec<&str> = files.iter().map(|f| f.spec.slug.as_str()).collect();
        let mut before: Vec<&str> = BEFORE.iter().map(|b| b.0).chain(ADDED).collect();
        slugs.sort_unstable();
        before.sort_unstable();
        assert_eq!(slugs, before);
        let checked = NaiveDate::from_ymd_opt(2026, 11, 29);
        for b in BEFORE {
            let f = files
                .iter()
                .find(|f| f.spec.slug == b.0)
                .ok_or_else(|| Error::Config(b.0.into()))?;
            let got = (
                f.spec.slug.as_str(),
                f.spec.name.as_str(),
                f.spec.kind,
                f.spec.width,
                f.spec.height,
                f.spec.dpi,
                f.spec.format,
                f.spec.min_kb,
                f.spec.max_kb,
                f.spec.filename_pattern.as_str(),
                f.spec.background.as_str(),
                f.source.url.as_str(),
            );
            assert_eq!(got, b);
            assert_eq!(Some(f.source.checked), checked, "{}", f.spec.slug);
        }
        Ok(())
    }

    #[test]
    fn builtin_and_find_serve_the_files() -> Result<()> {
        let rules = builtin()?;
        assert_eq!(rules.len(), BEFORE.len() + ADDED.len());
        assert!(rules.windows(2).all(|w| w[0].slug < w[1].slug));
        let neet = find("neet-ug-2026-photo")?.ok_or_else(|| Error::Config("neet".into()))?;
        assert_eq!(
            (neet.width, neet.height, neet.dpi, neet.min_kb, neet.max_kb),
            (200, 230, 200, 10, 100)
        );
        assert_eq!(
            find("aadhaar-update-document")?.map(|r| r.format),
            Some(OutputFormat::Pdf)
        );
        assert_eq!(find("no-such-portal")?, None);
        Ok(())
    }

    #[test]
    fn a_valid_file_parses_with_its_source() -> Result<()> {
        let f = RuleFile::parse("x-photo.toml", VALID)?;
        assert_eq!(f.source.url, "https://example.org/x");
        assert_eq!(
            Some(f.source.checked),
            NaiveDate::from_ymd_opt(2026, 11, 29)
        );
        assert!(f.source.also.is_empty());
        assert_eq!(f.source.portal_values(), ["format", "max_kb"]);
        assert_eq!(
            f.source.our_values(),
            ["width", "height", "dpi", "min_kb", "background"]
        );
        Ok(())
    }

    #[test]
    fn a_malformed_file_is_refused_with_its_name() {
        let cases = [
            // Not TOML.
            ("broken.toml", "slug = \"broken\"\nwidth = ".to_owned()),
            // A misspelt key.
            ("x-photo.toml", VALID.replace("min_kb", "minkb")),
            // A missing key.
            ("x-photo.toml", VALID.replace("dpi = 200\n", "")),
            // A kind the pipeline does not know.
            ("x-photo.toml", VALID.replace("\"photo\"", "\"selfie\"")),
            // The date as a string, or with a time.
            (
                "x-photo.toml",
                VALID.replace("2026-11-29", "\"2026-11-29\""),
            ),
            (
                "x-photo.toml",
                VALID.replace("2026-11-29", "2026-11-29T10:00:00Z"),
            ),
            // No [source].
            (
                "x-photo.toml",
                VALID
                    .split("[source]")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            // Named after another slug.
            ("y-photo.toml", VALID.to_owned()),
            // Values the database would refuse.
            ("x-photo.toml", VALID.replace("width = 200", "width = 8")),
            ("x-photo.toml", VALID.replace("dpi = 200", "dpi = 5000")),
            ("x-photo.toml", VALID.replace("min_kb = 10", "min_kb = 100")),
            (
                "x-photo.toml",
                VALID.replace("name = \"X\"", "name = \" \""),
            ),
            // Not a public address.
            (
                "x-photo.toml",
                VALID.replace("https://example", "ftp://example"),
            ),
            // Provenance: missing, naming no value, or a value twice.
            (
                "x-photo.toml",
                VALID.replace("portal_values = [\"format\", \"max_kb\"]\n", ""),
            ),
            ("x-photo.toml", VALID.replace("\"max_kb\"]", "\"pixels\"]")),
            ("x-photo.toml", VALID.replace("\"max_kb\"]", "\"format\"]")),
            // A face band upside down, or a face table on a signature.
            (
                "x-photo.toml",
                VALID.replace("[source]", &FACE.replace("0.70, 0.80", "0.80, 0.70")),
            ),
            (
                "x-photo.toml",
                VALID
                    .replace("[source]", FACE)
                    .replace("\"photo\"", "\"signature\""),
            ),
            (
                "x-photo.toml",
                VALID.replace("[source]", &FACE.replace("centre_tolerance", "centring")),
            ),
        ];
        for (file, text) in cases {
            match RuleFile::parse(file, &text) {
                Ok(f) => panic!("{file} parsed: {f:?}\n{text}"),
                Err(e) => assert!(
                    e.to_string().contains(&format!("portal-rules/{file}")),
                    "{e}"
                ),
            }
        }
    }
}
