//! The seeds' PII blocklist, enforced where log lines are written rather than trusted to every
//! call site: fields named like personal data are never written, and every other string value
//! (the message included) has e-mail addresses, IP addresses and file or storage paths replaced
//! by placeholders.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest, Sha256};

/// The placeholder written instead of a blocked field's value.
pub const REDACTED: &str = "[redacted]";

/// Field names (normalised: lower case, `.`/`-` → `_`) whose values are personal data or
/// user content: raw user ids, file names, storage keys and paths, addresses, OCR text,
/// bodies, tokens.
const BLOCKED_FIELDS: &[&str] = &[
    "user_id",
    "user",
    "sub",
    "email",
    "filename",
    "file_name",
    "original_filename",
    "name",
    "path",
    "key",
    "location",
    "ip",
    "addr",
    "remote_addr",
    "peer_addr",
    "client_ip",
    "x_forwarded_for",
    "forwarded",
    "text",
    "ocr_text",
    "body",
    "payload",
    "content",
    "contents",
    "uri",
    "url",
    "query",
    "token",
    "authorization",
];

/// Suffixes that mark a field as one of the above (`input_key`, `storage_path`, …).
const BLOCKED_SUFFIXES: &[&str] = &[
    "_user_id",
    "_key",
    "_path",
    "_filename",
    "_email",
    "_ip",
    "_addr",
    "_text",
    "_body",
    "_uri",
    "_url",
    "_token",
];

/// Operator-facing fields that describe the process itself (where its database lives, where it
/// listens) and are written as they are.
const OPERATOR_FIELDS: &[&str] = &["data_dir", "listen_addr", "models_dir", "http_path"];

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['.', '-'], "_")
}

/// Whether a field of this name must never be written.
pub fn is_blocked(field: &str) -> bool {
    let n = normalise(field);
    BLOCKED_FIELDS.contains(&n.as_str()) || BLOCKED_SUFFIXES.iter().any(|s| n.ends_with(s))
}

/// Whether a field is operator information exempt from [`scrub`].
pub fn is_operator_field(field: &str) -> bool {
    OPERATOR_FIELDS.contains(&normalise(field).as_str())
}

#[allow(clippy::expect_used)] // constant patterns, covered by the tests below
static PATTERNS: LazyLock<[(Regex, &'static str); 5]> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).expect("valid pattern");
    [
        (
            re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            "[email]",
        ),
        // Paths and storage keys: a word with two or more slashes, …
        (
            re(r#"(?:[^\s"'<>()\[\]{},;/]*/){2,}[^\s"'<>()\[\]{},;]*"#),
            "[path]",
        ),
        // … or one that starts with a slash (but not `image/jpeg`).
        (
            re(r#"(^|[\s"'(=\[<,;])/[^\s"'<>()\[\]{},;]+"#),
            "${1}[path]",
        ),
        (re(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "[ip]"),
        (
            re(r"\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}\b"),
            "[ip]",
        ),
    ]
});

/// `s` with e-mail addresses, paths and IP addresses replaced by placeholders.
pub fn scrub(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    for (re, with) in PATTERNS.iter() {
        if let Cow::Owned(replaced) = re.replace_all(&out, *with) {
            out = Cow::Owned(replaced);
        }
    }
    out
}

/// The seeds' `user_id_hash`: the first 16 hex digits of SHA-256 of the user id, so a user's
/// lines can be grouped without the id itself ever being written.
pub fn user_id_hash(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_personal_fields_by_name_and_suffix() {
        for f in [
            "user_id",
            "filename",
            "input_key",
            "output_key",
            "storage_path",
            "client_ip",
            "ocr_text",
            "Email",
            "user.id",
        ] {
            assert!(is_blocked(f), "{f}");
        }
        for f in [
            "job_id",
            "correlation_id",
            "user_id_hash",
            "error_code",
            "stage",
            "bytes",
        ] {
            assert!(!is_blocked(f), "{f}");
        }
    }

    #[test]
    fn scrubs_emails_paths_and_addresses() {
        let s = scrub(
            "cannot read /var/lib/rythmiq/raw/u/j/passport.jpg for asha.rao+x@mail.example.in \
             from 203.0.113.77 or fe80::1ff:fe23:4567:890a; key raw/5d1c/77aa/scan.png",
        );
        for leaked in [
            "/var/lib",
            "passport.jpg",
            "asha.rao",
            "203.0.113.77",
            "fe80",
            "raw/5d1c",
            "scan.png",
        ] {
            assert!(!s.contains(leaked), "{leaked} in {s}");
        }
        assert!(s.contains("[path]") && s.contains("[email]") && s.contains("[ip]"));
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        for s in [
            "job completed",
            "claim failed; retrying in 200ms",
            "content type image/jpeg is not accepted",
            "quality 0.82 took 12.5 ms",
            "rythmiq::process queue",
            "a 3/4 crop",
        ] {
            assert_eq!(scrub(s), s);
        }
    }

    #[test]
    fn user_id_hash_is_sha256_prefix() {
        // printf 'abc' | sha256sum → ba7816bf8f01cfea…
        assert_eq!(user_id_hash("abc"), "ba7816bf8f01cfea");
    }
}
