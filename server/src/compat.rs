//! The Postgres-only spellings of catalog queries (psql's `\dt` and `\d`, drivers' type
//! lookups) rewritten into SQL DataFusion plans: `OPERATOR(pg_catalog.~)`, `COLLATE
//! pg_catalog.default`, schema-qualified catalog functions, casts to catalog types and
//! correlated scalar subqueries without an aggregate. Only
//! statements that name `pg_catalog` are touched.

use std::borrow::Cow;

/// Catalog queries about what kalamstore has none of (row-level policies, ...), which use
/// constructs DataFusion does not plan (`array(subquery)`): answered with no rows of the same
/// columns.
const EMPTY_ANSWERS: &[(&str, &str)] = &[
    (
        "FROM pg_catalog.pg_policy pol",
        "SELECT polname, polpermissive, polroles, polqual, polwithcheck, polcmd AS cmd \
         FROM pg_catalog.pg_policy WHERE false",
    ),
    (
        "FROM pg_catalog.pg_statistic_ext",
        "SELECT oid, stxrelid, stxname AS nsp, stxname, stxname AS columns, false AS a, \
         false AS b, false AS c, stxstattarget FROM pg_catalog.pg_statistic_ext WHERE false",
    ),
    (
        "FROM pg_catalog.pg_publication p",
        "SELECT pubname, pubname AS a, pubname AS b FROM pg_catalog.pg_publication WHERE false",
    ),
    (
        "c.oid = i.inhparent AND i.inhrelid",
        "SELECT inhparent FROM pg_catalog.pg_inherits WHERE false",
    ),
    (
        "c.oid = i.inhrelid AND i.inhparent",
        "SELECT inhrelid, 'r' AS relkind, false AS inhdetachpending, '' AS bound \
         FROM pg_catalog.pg_inherits WHERE false",
    ),
];

/// `sql` as DataFusion can plan it.
pub(crate) fn rewrite(sql: &str) -> Cow<'_, str> {
    if !sql.contains("pg_catalog") {
        return Cow::Borrowed(sql);
    }
    if let Some((_, empty)) = EMPTY_ANSWERS
        .iter()
        .find(|(marker, _)| sql.contains(marker))
    {
        return Cow::Borrowed(empty);
    }
    let mut out = sql
        // psql's correlated scalar subqueries return at most one row by construction;
        // DataFusion wants that said with an aggregate.
        .replace(
            "(SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)",
            "(SELECT max(pg_catalog.pg_get_expr(d.adbin, d.adrelid, true))",
        )
        .replace("AND a.atthasdef)", ")")
        // The index definition is a column of kalamstore's `pg_index`.
        .replace(
            "pg_catalog.pg_get_indexdef(i.indexrelid, 0, true)",
            "i.indexdef",
        )
        .replace("OPERATOR(pg_catalog.~)", "~")
        .replace("OPERATOR(pg_catalog.=)", "=")
        .replace(" COLLATE pg_catalog.default", "")
        .replace("::pg_catalog.regtype::pg_catalog.text", "::text")
        .replace("::pg_catalog.regclass", "")
        .replace("::pg_catalog.regtype", "")
        .replace("::pg_catalog.oid", "::bigint")
        .replace("::pg_catalog.", "::");
    // Columns have no collation of their own: the subquery that looks one up is NULL.
    out = replace_group(&out, "(SELECT c.collname FROM", "CAST(NULL AS TEXT)");
    out = unqualify_functions(&out);
    Cow::Owned(out)
}

/// Replaces the parenthesized group that starts with `start` (up to its matching `)`) by
/// `with`.
fn replace_group(sql: &str, start: &str, with: &str) -> String {
    let Some(at) = sql.find(start) else {
        return sql.to_owned();
    };
    let mut depth = 0usize;
    for (i, c) in sql[at..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return format!("{}{with}{}", &sql[..at], &sql[at + i + 1..]);
                }
            }
            _ => {}
        }
    }
    sql.to_owned()
}

/// `pg_catalog.f(` becomes `f(`: DataFusion resolves functions by their bare name, and the
/// catalog functions are registered under theirs. Tables (`pg_catalog.t` without `(`) stay.
fn unqualify_functions(sql: &str) -> String {
    const PREFIX: &str = "pg_catalog.";
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(PREFIX) {
        out.push_str(&rest[..at]);
        let after = &rest[at + PREFIX.len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if after[name_len..].starts_with('(') {
            out.push_str(&after[..name_len]);
        } else {
            out.push_str(PREFIX);
            out.push_str(&after[..name_len]);
        }
        rest = &after[name_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_spellings_become_plannable_and_other_sql_is_untouched() {
        let sql = "SELECT pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(m)$' COLLATE pg_catalog.default";
        assert_eq!(
            rewrite(sql),
            "SELECT pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c \
             WHERE c.relname ~ '^(m)$'"
        );
        let plain = "SELECT 'OPERATOR(x)' FROM app.t";
        assert!(matches!(rewrite(plain), Cow::Borrowed(s) if s == plain));
    }
}
