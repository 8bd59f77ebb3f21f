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

/// `FROM child c WHERE … NOT EXISTS (parent p …)`: the rows of `child`
/// (qualified SQL) a foreign key from `columns` to `parent`'s `ref_columns`
/// rejects — every column set (MATCH SIMPLE leaves a row with a NULL alone)
/// and no parent row with those values. The caller chooses what to select
/// of `c`.
pub fn rows_without_parent(
    child: &str,
    columns: &[String],
    parent: &str,
    ref_columns: &[String],
) -> String {
    let set: Vec<String> = columns
        .iter()
        .map(|c| format!("c.{} IS NOT NULL", ident(c)))
        .collect();
    let matches: Vec<String> = columns
        .iter()
        .zip(ref_columns)
        .map(|(c, r)| format!("p.{} = c.{}", ident(r), ident(c)))
        .collect();
    format!(
        "FROM {child} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
        set.join(" AND "),
        matches.join(" AND ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_without_parent_match_every_key_column() {
        assert_eq!(
            rows_without_parent(
                "\"public\".\"line_items\"",
                &["store_id".into(), "order_id".into()],
                "\"public\".\"orders\"",
                &["store_id".into(), "id".into()],
            ),
            "FROM \"public\".\"line_items\" c WHERE c.\"store_id\" IS NOT NULL AND c.\"order_id\" \
             IS NOT NULL AND NOT EXISTS (SELECT 1 FROM \"public\".\"orders\" p WHERE p.\"store_id\" = \
             c.\"store_id\" AND p.\"id\" = c.\"order_id\")"
        );
    }

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
