//! The portal rules compiled into the binary, for `rythmiq process` (no database). They are parsed
//! from the very migration that seeds `portal_schemas`, so the two can never drift apart.

use uuid::Uuid;

use crate::domain::{DocumentKind, OutputFormat, PortalRule};
use crate::{Error, Result};

const SEED_SQL: &str = include_str!("../../migrations/20261129000002_seed_portal_schemas.sql");

/// The column list every seed INSERT uses; the parser refuses any other shape.
const COLUMNS: &str = "slug, version, name, kind, width, height, dpi, format, min_kb, max_kb, \
                       filename_pattern, background, source_url, active";

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// Splits one `( … )` tuple of SQL literals.
fn literals(tuple: &str) -> Result<Vec<Value>> {
    let bad = |what: &str| Error::Config(format!("seed SQL: {what} in {tuple:?}"));
    let mut out = Vec::new();
    let mut chars = tuple.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\n' | '\r' | '\t' | ',' => {
                chars.next();
            }
            '\'' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            s.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => s.push(ch),
                        None => return Err(bad("unterminated string")),
                    }
                }
                out.push(Value::Text(s));
            }
            _ => {
                let mut word = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch == ',' || ch.is_whitespace() {
                        break;
                    }
                    word.push(ch);
                    chars.next();
                }
                out.push(match word.to_ascii_uppercase().as_str() {
                    "TRUE" => Value::Bool(true),
                    "FALSE" => Value::Bool(false),
                    _ => Value::Int(word.parse().map_err(|_| bad("unexpected token"))?),
                });
            }
        }
    }
    Ok(out)
}

fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Every active rule seeded by the migrations.
pub fn builtin() -> Result<Vec<PortalRule>> {
    let sql: String = SEED_SQL
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rules = Vec::new();
    for (i, stmt) in sql.split("INSERT INTO portal_schemas").skip(1).enumerate() {
        let (cols, rest) = stmt
            .split_once("VALUES")
            .ok_or_else(|| Error::Config("seed SQL: INSERT without VALUES".into()))?;
        let cols = cols.trim().trim_start_matches('(').trim_end_matches(')');
        if normalise(cols) != normalise(COLUMNS) {
            return Err(Error::Config(format!(
                "seed SQL: unexpected columns {cols:?}"
            )));
        }
        let tuple = rest
            .trim()
            .strip_prefix('(')
            .and_then(|r| r.trim_end().strip_suffix(");"))
            .ok_or_else(|| Error::Config("seed SQL: expected one (…); tuple per INSERT".into()))?;
        let v = literals(tuple)?;
        let rule = to_rule(i, &v).ok_or_else(|| {
            Error::Config(format!(
                "seed SQL: tuple {i} does not match the columns: {v:?}"
            ))
        })?;
        if matches!(v.get(13), Some(Value::Bool(true))) {
            rules.push(rule);
        }
    }
    Ok(rules)
}

fn to_rule(index: usize, v: &[Value]) -> Option<PortalRule> {
    let text = |i: usize| match v.get(i) {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    };
    let int = |i: usize| match v.get(i) {
        Some(Value::Int(n)) => i32::try_from(*n).ok(),
        _ => None,
    };
    let kind = match text(3)?.as_str() {
        "photo" => DocumentKind::Photo,
        "signature" => DocumentKind::Signature,
        "document" => DocumentKind::Document,
        _ => return None,
    };
    let format = match text(7)?.as_str() {
        "jpeg" => OutputFormat::Jpeg,
        "png" => OutputFormat::Png,
        "pdf" => OutputFormat::Pdf,
        _ => return None,
    };
    Some(PortalRule {
        // Offline rules have no database row; a stable id per position is enough.
        id: Uuid::from_u128(index as u128 + 1),
        slug: text(0)?,
        version: int(1)?,
        name: text(2)?,
        kind,
        width: int(4)?,
        height: int(5)?,
        dpi: int(6)?,
        format,
        min_kb: int(8)?,
        max_kb: int(9)?,
        filename_pattern: text(10)?,
        background: text(11)?,
    })
}

/// The built-in rule for `slug`.
pub fn find(slug: &str) -> Result<Option<PortalRule>> {
    Ok(builtin()?.into_iter().find(|r| r.slug == slug))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_seeded_rule() -> Result<()> {
        let rules = builtin()?;
        assert!(rules.len() >= 9, "{}", rules.len());
        let neet = find("neet-ug-2026-photo")?.ok_or_else(|| Error::Config("neet".into()))?;
        assert_eq!(
            (neet.width, neet.height, neet.dpi, neet.min_kb, neet.max_kb),
            (200, 230, 200, 10, 100)
        );
        assert_eq!(neet.format, OutputFormat::Jpeg);
        let ibps = find("ibps-2026-signature")?.ok_or_else(|| Error::Config("ibps".into()))?;
        assert_eq!(
            (ibps.width, ibps.height, ibps.min_kb, ibps.max_kb),
            (140, 60, 10, 20)
        );
        assert_eq!(
            find("aadhaar-update-document")?.map(|r| r.format),
            Some(OutputFormat::Pdf)
        );
        Ok(())
    }

    #[test]
    fn literal_parser_handles_quotes_and_rejects_garbage() -> Result<()> {
        assert_eq!(
            literals("'it''s', 12, TRUE")?,
            vec![
                Value::Text("it's".into()),
                Value::Int(12),
                Value::Bool(true)
            ]
        );
        assert!(literals("'open").is_err());
        assert!(literals("now()").is_err());
        Ok(())
    }
}
