//! SQL type names (`BIGINT`, `VARCHAR(20)`, `DOUBLE PRECISION`, ...) to `KalamDataType`.

use super::KalamDataType;
use crate::error::{Error, Result};

/// Parses a SQL type name, case-insensitively, with optional parameters.
///
/// Length limits such as `VARCHAR(255)` are accepted and not enforced by the type.
pub fn parse_sql_type(sql: &str) -> Result<KalamDataType> {
    let invalid = |reason: String| Error::InvalidType { reason };
    let normalized = sql
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_uppercase();
    let (name, args) = match normalized.find('(') {
        Some(open) => {
            let close = normalized
                .rfind(')')
                .filter(|c| *c > open && normalized[c + 1..].trim().is_empty())
                .ok_or_else(|| invalid(format!("unbalanced parentheses in type `{sql}`")))?;
            let args: Vec<&str> = normalized[open + 1..close]
                .split(',')
                .map(str::trim)
                .collect();
            (normalized[..open].trim(), Some(args))
        }
        None => (normalized.as_str(), None),
    };
    let number = |s: &str| -> Result<u32> {
        s.parse::<u32>()
            .map_err(|_| invalid(format!("`{s}` is not a whole number in type `{sql}`")))
    };
    let t = match (name, args.as_deref()) {
        ("BOOLEAN" | "BOOL", None) => KalamDataType::Boolean,
        ("SMALLINT" | "INT2", None) => KalamDataType::SmallInt,
        ("INT" | "INTEGER" | "INT4", None) => KalamDataType::Int,
        ("BIGINT" | "INT8", None) => KalamDataType::BigInt,
        ("FLOAT" | "REAL" | "FLOAT4", None) => KalamDataType::Float,
        ("DOUBLE" | "DOUBLE PRECISION" | "FLOAT8", None) => KalamDataType::Double,
        ("TEXT" | "STRING", None) => KalamDataType::Text,
        ("VARCHAR" | "CHAR" | "CHARACTER VARYING", None | Some([_])) => {
            if let Some([n]) = args.as_deref() {
                number(n)?;
            }
            KalamDataType::Text
        }
        ("TIMESTAMP", None) => KalamDataType::Timestamp,
        ("DATETIME" | "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE", None) => KalamDataType::DateTime,
        ("DATE", None) => KalamDataType::Date,
        ("TIME", None) => KalamDataType::Time,
        ("JSON" | "JSONB", None) => KalamDataType::Json,
        ("BYTES" | "BYTEA" | "BLOB" | "BINARY" | "VARBINARY", None) => KalamDataType::Bytes,
        ("UUID", None) => KalamDataType::Uuid,
        ("DECIMAL" | "NUMERIC", None) => KalamDataType::Decimal {
            precision: 38,
            scale: 10,
        },
        ("DECIMAL" | "NUMERIC", Some([p])) => KalamDataType::Decimal {
            precision: to_u8(number(p)?, sql)?,
            scale: 0,
        },
        ("DECIMAL" | "NUMERIC", Some([p, s])) => KalamDataType::Decimal {
            precision: to_u8(number(p)?, sql)?,
            scale: to_u8(number(s)?, sql)? as i8,
        },
        ("EMBEDDING" | "VECTOR", Some([d])) => KalamDataType::Embedding { dim: number(d)? },
        _ => return Err(invalid(format!("unknown SQL type `{sql}`"))),
    };
    t.validate().map_err(invalid)
}

fn to_u8(n: u32, sql: &str) -> Result<u8> {
    u8::try_from(n).map_err(|_| Error::InvalidType {
        reason: format!("{n} is too large in type `{sql}`"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_sql_names_parse() {
        let cases = [
            ("bigint", KalamDataType::BigInt),
            ("VARCHAR(255)", KalamDataType::Text),
            ("double   precision", KalamDataType::Double),
            ("TIMESTAMP", KalamDataType::Timestamp),
            (
                "decimal(10, 2)",
                KalamDataType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            ),
            ("EMBEDDING(384)", KalamDataType::Embedding { dim: 384 }),
            ("time", KalamDataType::Time),
            ("uuid", KalamDataType::Uuid),
        ];
        for (sql, expected) in cases {
            assert_eq!(parse_sql_type(sql).unwrap(), expected, "{sql}");
        }
    }

    #[test]
    fn bad_type_names_give_errors_not_panics() {
        for sql in [
            "",
            "FOO",
            "DECIMAL(",
            "DECIMAL(99)",
            "VARCHAR(x)",
            "EMBEDDING(0)",
            "INT(3",
            "DECIMAL(300,1)",
        ] {
            assert!(parse_sql_type(sql).is_err(), "{sql}");
        }
    }
}
