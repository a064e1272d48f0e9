//! Literals to typed values (driven by the column's type), and values to text and JSON.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use kalamstore::{KalamDataType, KalamValue};

use crate::error::{CliError, invalid};
use crate::parse::Literal;
pub use crate::parse::MAX_LITERAL_BYTES;

/// The value of a literal for a column of `data_type`; `params` fill `$n` placeholders.
pub fn to_value(
    literal: &Literal,
    data_type: KalamDataType,
    column: &str,
    params: &[String],
) -> Result<KalamValue, CliError> {
    use KalamDataType as T;
    use KalamValue as V;
    let wrong = |what: &str| invalid(format!("column `{column}` is {data_type}, got {what}"));
    let text = match literal {
        Literal::Null => return Ok(V::Null),
        Literal::Placeholder(n) => {
            let p = params.get(n - 1).ok_or_else(|| {
                invalid(format!(
                    "${n} has no value ({} --param given)",
                    params.len()
                ))
            })?;
            return from_text(p, data_type, column);
        }
        Literal::Bool(b) => {
            return match data_type {
                T::Boolean => Ok(V::Boolean(*b)),
                _ => Err(wrong(&b.to_string())),
            };
        }
        Literal::Number(n) => {
            if matches!(data_type, T::Text | T::Json | T::Bytes | T::Uuid | T::Date) {
                return Err(wrong(&format!("the number {n}")));
            }
            n
        }
        Literal::String(s) => {
            if s.len() > MAX_LITERAL_BYTES {
                return Err(invalid(format!(
                    "column `{column}`: a {}-byte literal exceeds the {MAX_LITERAL_BYTES}-byte limit",
                    s.len()
                )));
            }
            if matches!(
                data_type,
                T::SmallInt
                    | T::Int
                    | T::BigInt
                    | T::Float
                    | T::Double
                    | T::Boolean
                    | T::Decimal { .. }
            ) {
                return Err(wrong(&format!("the string '{s}'")));
            }
            s
        }
    };
    from_text(text, data_type, column)
}

/// Parses text (a literal's body or a `--param`) as a value of `data_type`.
pub fn from_text(s: &str, data_type: KalamDataType, column: &str) -> Result<KalamValue, CliError> {
    use KalamDataType as T;
    use KalamValue as V;
    let bad = || {
        invalid(format!(
            "column `{column}`: `{s}` is not a valid {data_type}"
        ))
    };
    let t = s.trim();
    Ok(match data_type {
        T::Null => return Err(bad()),
        T::Boolean => match t.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => V::Boolean(true),
            "false" | "f" | "0" => V::Boolean(false),
            _ => return Err(bad()),
        },
        T::SmallInt => V::SmallInt(t.parse().map_err(|_| bad())?),
        T::Int => V::Int(t.parse().map_err(|_| bad())?),
        T::BigInt => V::BigInt(t.parse().map_err(|_| bad())?),
        T::Float => V::Float(
            t.parse()
                .ok()
                .filter(|f: &f32| f.is_finite())
                .ok_or_else(bad)?,
        ),
        T::Double => V::Double(
            t.parse()
                .ok()
                .filter(|f: &f64| f.is_finite())
                .ok_or_else(bad)?,
        ),
        T::Text => V::Text(s.to_owned()),
        T::Json => {
            serde_json::from_str::<serde_json::Value>(s)
                .map_err(|e| invalid(format!("column `{column}`: not valid JSON: {e}")))?;
            V::Json(s.to_owned())
        }
        T::Bytes => V::Bytes(s.as_bytes().to_vec()),
        T::Timestamp | T::DateTime => {
            let micros = parse_timestamp(t).ok_or_else(bad)?;
            if data_type == T::Timestamp {
                V::Timestamp(micros)
            } else {
                V::DateTime(micros)
            }
        }
        T::Date => {
            let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| bad())?;
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
            V::Date(i32::try_from((d - epoch).num_days()).map_err(|_| bad())?)
        }
        T::Time => {
            let time = NaiveTime::parse_from_str(t, "%H:%M:%S%.f").map_err(|_| bad())?;
            let midnight = NaiveTime::from_hms_opt(0, 0, 0).expect("a valid time");
            V::Time((time - midnight).num_microseconds().ok_or_else(bad)?)
        }
        T::Uuid => {
            let hex: String = t.chars().filter(|c| *c != '-').collect();
            if hex.len() != 32 {
                return Err(bad());
            }
            let mut bytes = [0u8; 16];
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
                    .map_err(|_| bad())?;
            }
            V::Uuid(bytes)
        }
        T::Decimal { scale, .. } => {
            let (int, frac) = t.split_once('.').unwrap_or((t, ""));
            let scale = usize::try_from(scale).map_err(|_| bad())?;
            if frac.len() > scale || frac.contains(['-', '+']) {
                return Err(bad());
            }
            let digits = format!("{int}{frac:0<scale$}");
            let v = V::Decimal(digits.parse().map_err(|_| bad())?);
            if !v.fits(data_type) {
                return Err(bad());
            }
            v
        }
        T::Embedding { dim } => {
            let parts: Vec<f32> = t
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .map(|p| p.trim().parse::<f32>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            if parts.len() != dim as usize {
                return Err(invalid(format!(
                    "column `{column}`: EMBEDDING({dim}) needs {dim} numbers, got {}",
                    parts.len()
                )));
            }
            V::Embedding(parts)
        }
        _ => return Err(bad()),
    })
}

fn parse_timestamp(t: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.timestamp_micros());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    t.parse::<i64>().ok()
}

fn iso(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| micros.to_string())
}

/// A value as people read it (NULL as `NULL`).
pub fn to_text(v: &KalamValue, data_type: KalamDataType) -> String {
    use KalamValue as V;
    match v {
        V::Null => "NULL".into(),
        V::Boolean(b) => b.to_string(),
        V::SmallInt(n) => n.to_string(),
        V::Int(n) => n.to_string(),
        V::BigInt(n) => n.to_string(),
        V::Float(f) => f.to_string(),
        V::Double(f) => f.to_string(),
        V::Text(s) | V::Json(s) => s.clone(),
        V::Timestamp(m) | V::DateTime(m) => iso(*m),
        V::Date(d) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|e| e.checked_add_signed(chrono::Duration::days(i64::from(*d))))
            .map_or_else(|| d.to_string(), |d| d.to_string()),
        V::Time(m) => NaiveTime::from_hms_opt(0, 0, 0)
            .map(|t| (t + chrono::Duration::microseconds(*m)).to_string())
            .unwrap_or_else(|| m.to_string()),
        V::Bytes(b) => format!(
            "\\x{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
        V::Uuid(u) => {
            let h: String = u.iter().map(|x| format!("{x:02x}")).collect();
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        }
        V::Decimal(d) => match data_type {
            KalamDataType::Decimal { scale, .. } if scale > 0 => {
                let s = usize::try_from(scale).unwrap_or(0);
                let digits = format!("{:0>width$}", d.unsigned_abs(), width = s + 1);
                let (i, f) = digits.split_at(digits.len() - s);
                format!("{}{i}.{f}", if *d < 0 { "-" } else { "" })
            }
            _ => d.to_string(),
        },
        V::Embedding(v) => format!(
            "[{}]",
            v.iter().map(f32::to_string).collect::<Vec<_>>().join(", ")
        ),
        _ => format!("{v:?}"),
    }
}

/// A value as JSON: NULL as `null`, numbers as numbers, timestamps as ISO-8601 strings.
pub fn to_json(v: &KalamValue, data_type: KalamDataType) -> serde_json::Value {
    use KalamValue as V;
    use serde_json::Value as J;
    match v {
        V::Null => J::Null,
        V::Boolean(b) => J::Bool(*b),
        V::SmallInt(n) => J::from(*n),
        V::Int(n) => J::from(*n),
        V::BigInt(n) => J::from(*n),
        V::Float(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number),
        V::Double(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        V::Json(s) => serde_json::from_str(s).unwrap_or_else(|_| J::String(s.clone())),
        V::Embedding(v) => J::Array(
            v.iter()
                .map(|f| serde_json::Number::from_f64(f64::from(*f)).map_or(J::Null, J::Number))
                .collect(),
        ),
        other => J::String(to_text(other, data_type)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_follow_their_column_type() {
        let v = |l: Literal, t| to_value(&l, t, "c", &[]);
        assert_eq!(
            v(Literal::Number("-5".into()), KalamDataType::Int).unwrap(),
            KalamValue::Int(-5)
        );
        assert!(v(Literal::Number("99999999999".into()), KalamDataType::Int).is_err());
        assert!(v(Literal::String("x".into()), KalamDataType::BigInt).is_err());
        assert!(v(Literal::Number("1".into()), KalamDataType::Text).is_err());
        let ts = v(
            Literal::String("2024-05-01T10:00:00Z".into()),
            KalamDataType::Timestamp,
        )
        .unwrap();
        assert_eq!(
            to_text(&ts, KalamDataType::Timestamp),
            "2024-05-01T10:00:00Z"
        );
        let d = KalamDataType::Decimal {
            precision: 10,
            scale: 2,
        };
        let dec = v(Literal::Number("12.5".into()), d).unwrap();
        assert_eq!(dec, KalamValue::Decimal(1250));
        assert_eq!(to_text(&dec, d), "12.50");
        assert!(v(Literal::Placeholder(2), KalamDataType::Int).is_err());
        assert_eq!(
            to_value(
                &Literal::Placeholder(1),
                KalamDataType::Int,
                "c",
                &["7".into()]
            )
            .unwrap(),
            KalamValue::Int(7)
        );
    }
}
