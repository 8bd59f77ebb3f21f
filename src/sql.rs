//! SQL text helpers: the one place identifiers and literals are quoted.
//!
//! Every identifier that reaches SQL text goes through [`ident`] (or
//! [`qualified`]); every literal through [`literal`]. Nothing else builds SQL
//! from user or catalog input.

/// Quotes an identifier the way `quote_ident` does, always (so mixed case,
/// spaces, reserved words and non-ASCII survive unchanged).
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// Quotes a string literal (`'it''s'`); backslashes are safe because
/// `standard_conforming_strings` is on in every supported server, and an
/// `E''` literal is used when the text contains one, to be sure.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(ident("orders"), "\"orders\"");
        assert_eq!(ident("Order Items"), "\"Order Items\"");
        assert_eq!(ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(ident("select"), "\"select\"");
        assert_eq!(
            qualified("public", "line_items"),
            "\"public\".\"line_items\""
        );
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(literal("abc"), "'abc'");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("a\\b"), "E'a\\\\b'");
    }
}
