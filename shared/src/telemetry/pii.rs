//! The PII blocklist, enforced where log lines are written rather than trusted to every
//! call site: fields named like personal data are never written, and every other string value
//! (the message included) has e-mail addresses, IP addresses and file or storage paths replaced
//! by placeholders.

use std::borrow::Cow;
use std::net::Ipv6Addr;
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

/// The placeholder written instead of an IP address.
const IP: &str = "[ip]";

#[allow(clippy::expect_used)] // constant patterns, covered by the tests below
static PATTERNS: LazyLock<[(Regex, &'static str); 3]> = LazyLock::new(|| {
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
    ]
});

#[allow(clippy::expect_used)] // constant pattern, covered by the tests below
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:\d{1,3}\.){3}\d{1,3}\b").expect("valid pattern"));

/// Runs of the characters an IPv6 address is written with, and an optional zone (`%eth0`):
/// only candidates, each confirmed by [`Ipv6Addr`]'s parser in [`scrub_ipv6`].
#[allow(clippy::expect_used)] // constant pattern, covered by the tests below
static IPV6_CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[0-9A-Fa-f:.]+(?:%[0-9A-Za-z_.~-]+)?").expect("valid pattern"));

/// `s` with e-mail addresses, paths and IP addresses replaced by placeholders.
pub fn scrub(s: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(s);
    for (re, with) in PATTERNS.iter() {
        replace(&mut out, |t| re.replace_all(t, *with));
    }
    // IPv6 before IPv4, so that an embedded IPv4 (`::ffff:192.0.2.1`) goes with its address.
    replace(&mut out, scrub_ipv6);
    replace(&mut out, |t| IPV4.replace_all(t, IP));
    out
}

/// Applies one replacement to `out`, copying only when it changes something.
fn replace(out: &mut Cow<'_, str>, f: impl for<'t> FnOnce(&'t str) -> Cow<'t, str>) {
    if let Cow::Owned(replaced) = f(out) {
        *out = Cow::Owned(replaced);
    }
}

/// `s` with every IPv6 address (full, `::`-compressed, with an embedded IPv4, with a zone)
/// replaced by [`IP`]. A regular expression loose enough for every IPv6 form also matches clock
/// times, MAC addresses and Rust paths, so each candidate is kept only if the standard library
/// parses it as an address.
fn scrub_ipv6(s: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    for m in IPV6_CANDIDATE.find_iter(s) {
        if let Some(range) = ipv6_within(s, m.start(), m.end()) {
            out.push_str(&s[copied..range.start]);
            out.push_str(IP);
            copied = range.end;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// The byte range of the IPv6 address (with its zone) in the candidate `s[start..end]`, if any.
fn ipv6_within(s: &str, start: usize, end: usize) -> Option<std::ops::Range<usize>> {
    let candidate = &s[start..end];
    let (addr, zone) = candidate
        .split_once('%')
        .map_or((candidate, ""), |(a, z)| (a, z));
    if addr.bytes().filter(|&b| b == b':').count() < 2 {
        return None;
    }
    // A sentence's full stop or a separating colon after the address is not part of it.
    let mut addr_end = if zone.is_empty() {
        addr.trim_end_matches('.').len()
    } else {
        addr.len()
    };
    if zone.is_empty() && !addr[..addr_end].ends_with("::") && addr[..addr_end].ends_with(':') {
        addr_end -= 1;
    }
    let addr = &addr[..addr_end];
    let end = if zone.is_empty() {
        start + addr_end
    } else {
        end
    };
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    // Part of a longer word (`dead::beefy`, `crate::cafe`): not an address.
    if word(s[end..].chars().next()) {
        return None;
    }
    // The address may start the candidate, or follow a single `:` inside it
    // (`addr:fe80::1`, a time stamp's `12:` glued to an address).
    let starts =
        std::iter::once(0).chain(addr.match_indices(':').map(|(i, _)| i + 1).filter(|&i| {
            i < addr.len() && !addr[i..].starts_with(':') && !addr[..i - 1].ends_with(':')
        }));
    for from in starts {
        if from == 0 && word(s[..start].chars().next_back()) {
            continue;
        }
        if addr[from..].parse::<Ipv6Addr>().is_ok() {
            return Some(start + from..end);
        }
    }
    None
}

/// The `user_id_hash`: the first 16 hex digits of SHA-256 of the user id, so a user's
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
    fn scrubs_every_form_of_ipv6_address() {
        for (line, kept) in [
            (
                "peer 2001:0db8:85a3:0000:0000:8a2e:0370:7334 closed",
                ["peer ", " closed"],
            ),
            ("peer 2001:db8::8a2e:370:7334 closed", ["peer ", " closed"]),
            ("bound to :: then", ["bound to ", " then"]),
            ("from ::1.", ["from ", "."]),
            ("mapped ::ffff:192.0.2.128 here", ["mapped ", " here"]),
            ("link fe80::1ff:fe23:4567:890a%eth0 up", ["link ", " up"]),
            (
                "dial [2001:db8::1]:8443 failed",
                ["dial [", "]:8443 failed"],
            ),
            ("addr=2001:DB8:0:0:8:800:200C:417A,", ["addr=", ","]),
            ("connect fe80::2: refused", ["connect ", ": refused"]),
            ("remote:2001:db8::7 gone", ["remote:", " gone"]),
        ] {
            let out = scrub(line);
            assert_eq!(out, format!("{}[ip]{}", kept[0], kept[1]), "{line}");
        }
    }

    #[test]
    fn times_dates_ids_and_paths_in_code_are_not_addresses() {
        for s in [
            "expired at 2026-01-01 12:30:45 UTC",
            "at 12:30:45.123456 and 23:59",
            "2026-01-01T12:30:45+05:30",
            "took 00:00:01.250",
            "job 5d1c77aa-0b8e-4c4f-9d7e-2f3a4b5c6d7e done",
            "nic 00:1a:2b:3c:4d:5e and 00-1A-2B-3C-4D-5E",
            "ratio 16:9:1",
            "rythmiq_worker::pipeline::decode failed",
            "std::net::Ipv6Addr and dead::beefy",
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
