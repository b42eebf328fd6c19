//! The name an output is stored and downloaded under.

use rythmiq_domain::{DocumentKind, OutputFormat, PortalRule};
use uuid::Uuid;

pub(super) const MAX_FILENAME_LEN: usize = 128;

/// The file name to upload under, from `rule.filename_pattern` with `{job_id}`, `{slug}` and
/// `{kind}` replaced, reduced to `[A-Za-z0-9._-]`, at most 128 characters, and ending in the
/// format's extension.
pub fn output_filename(rule: &PortalRule, job_id: Uuid) -> String {
    let kind = match rule.kind {
        DocumentKind::Photo => "photo",
        DocumentKind::Signature => "signature",
        DocumentKind::Document => "document",
    };
    let job = job_id.to_string();
    // Single pass, so a slug that happens to contain "{kind}" is not expanded twice.
    let mut expanded = String::new();
    let mut rest = rule.filename_pattern.as_str();
    while let Some(open) = rest.find('{') {
        expanded.push_str(&rest[..open]);
        rest = &rest[open..];
        let value = [
            ("{job_id}", job.as_str()),
            ("{slug}", rule.slug.as_str()),
            ("{kind}", kind),
        ]
        .into_iter()
        .find(|(placeholder, _)| rest.starts_with(placeholder));
        match value {
            Some((placeholder, value)) => {
                expanded.push_str(value);
                rest = &rest[placeholder.len()..];
            }
            None => {
                expanded.push('{');
                rest = &rest[1..];
            }
        }
    }
    expanded.push_str(rest);

    let sanitised = rythmiq_domain::safe_chars(&expanded);
    // A leading dot hides the file and a leading dash reads as a command-line flag.
    let sanitised = sanitised.trim_start_matches(['.', '-']);

    let default_ext = rule.format.extension();
    let accepted: &[&str] = match rule.format {
        OutputFormat::Jpeg => &["jpg", "jpeg"],
        OutputFormat::Png => &["png"],
        OutputFormat::Pdf => &["pdf"],
    };
    let lower = sanitised.to_ascii_lowercase();
    let (stem, ext) = accepted
        .iter()
        .find(|ext| lower.len() > ext.len() + 1 && lower.ends_with(&format!(".{ext}")))
        .map_or((sanitised, default_ext), |ext| {
            let split = sanitised.len() - ext.len();
            (&sanitised[..split - 1], &sanitised[split..])
        });
    // Everything is ASCII now, so byte truncation cannot split a character.
    let room = MAX_FILENAME_LEN - 1 - ext.len();
    let stem = &stem[..stem.len().min(room)];
    let stem = if stem.is_empty() { job.as_str() } else { stem };
    format!("{stem}.{ext}")
}
