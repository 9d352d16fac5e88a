//! The `i;unicode-casemap` collation (RFC 5051): strings are compared as
//! "titlecased canonicalized UTF-8", each character replaced by its simple
//! titlecase mapping and its (compatibility) decomposition, repeatedly,
//! then compared octet by octet. SORT and THREAD compare base subjects and
//! addresses this way (RFC 5256 section 7), and SEARCH matches header text
//! this way, as Dovecot does: `e` finds `É`, `straße` finds `STRASSE` only
//! where the decomposition says so.
//!
//! Unicode data comes from two well-kept crates: `unicode-case-mapping`
//! (titlecase, Unicode 16) and `unicode-normalization` (decomposition).
//! RFC 5051 uses the *simple* titlecase mappings of UnicodeData.txt; where
//! the crate gives a multi-character (SpecialCasing) mapping, such as ß ->
//! "Ss", the simple mapping is the character itself, as here.

use unicode_normalization::char::decompose_compatible;

/// `s` in titlecased canonical form.
pub fn casemap(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    casemap_into(s, &mut out);
    out
}

/// Appends the titlecased canonical form of `s` to `out`.
pub fn casemap_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_uppercase());
        } else {
            push_mapped(c, out, 0);
        }
    }
}

/// The form of non-ASCII `c`: titlecase, then decomposition, until
/// nothing changes (a decomposition may yield characters with a titlecase
/// mapping: ﬀ -> ff -> FF).
fn push_mapped(c: char, out: &mut String, depth: u8) {
    decompose_compatible(titlecase(c), |d| {
        let t = titlecase(d);
        if t != d && depth < 4 {
            push_mapped(t, out, depth + 1);
        } else {
            out.push(d);
        }
    });
}

/// The simple titlecase mapping of `c` (itself where there is none, or
/// where only a multi-character one exists).
fn titlecase(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    match unicode_case_mapping::to_titlecase(c) {
        [m, 0, 0] if m != 0 => char::from_u32(m).unwrap_or(c),
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_5051_forms() {
        assert_eq!(casemap("Hello, World"), "HELLO, WORLD");
        // Decomposition: accents become combining marks after the letter.
        assert_eq!(casemap("é"), "E\u{301}");
        assert_eq!(casemap("É"), "E\u{301}");
        // Compatibility decomposition, then titlecase.
        assert_eq!(casemap("ﬀ"), "FF");
        assert_eq!(casemap("①"), "1");
        // The digraphs titlecase to their titlecase forms, then decompose.
        assert_eq!(casemap("ǆ"), casemap("ǅ"));
        assert_eq!(casemap("ǅ"), "DZ\u{30c}");
        // ß has no simple titlecase mapping: it stays.
        assert_eq!(casemap("ß"), "ß");
        assert_eq!(casemap("Ωμέγα"), casemap("ΩΜΈΓΑ"));
    }
}
