//! Character sets for names that leave the system (object keys, file names, headers).

/// Replaces every character outside `[A-Za-z0-9._-]` with `_`: the one character set that is
/// safe in object keys, file names and `Content-Disposition` headers alike.
pub fn safe_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_portable_set_survives() {
        assert_eq!(safe_chars("a b/c\\d.é-_9"), "a_b_c_d._-_9");
        assert_eq!(safe_chars(""), "");
    }
}
