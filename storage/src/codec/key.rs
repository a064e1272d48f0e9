//! Memcomparable primary-key encoding: byte order of encoded keys equals the order of the values.
//!
//! | type                                   | encoding                                          |
//! |----------------------------------------|---------------------------------------------------|
//! | BOOLEAN                                | 1 byte, 0 or 1                                    |
//! | SMALLINT / INT / DATE                  | big-endian, sign bit flipped (2 / 4 / 4 bytes)    |
//! | BIGINT / TIMESTAMP / DATETIME / TIME   | big-endian, sign bit flipped (8 bytes)            |
//! | FLOAT / DOUBLE                         | IEEE bits; negative: all bits flipped, else sign bit flipped; big-endian |
//! | DECIMAL                                | i128 big-endian, sign bit flipped (16 bytes)      |
//! | UUID                                   | the 16 bytes                                      |
//! | TEXT / BYTES                           | bytes with 0x00 escaped as 0x00 0xFF, then 0x00 0x01 |
//!
//! A composite key is its components' encodings concatenated. Every component is either fixed
//! width or self-terminating, so a shorter key's encoding is never a prefix that sorts wrongly.
//! NULL, JSON and EMBEDDING cannot be key components.

use super::value::KalamValue;
use crate::error::{DecodeError, Error, Result};
use crate::types::KalamDataType;

const ESCAPE: u8 = 0x00;
const ESCAPED_ZERO: u8 = 0xFF;
const TERMINATOR: u8 = 0x01;

/// Encodes a (possibly composite) primary key; `columns` names the components in errors.
pub fn encode_key(values: &[KalamValue], columns: &[&str]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.iter().map(|v| v.encoded_len() + 2).sum());
    for (i, value) in values.iter().enumerate() {
        encode_component(value, &mut out).map_err(|reason| Error::InvalidValue {
            column: columns.get(i).copied().unwrap_or("?").to_owned(),
            reason: reason.to_owned(),
        })?;
    }
    Ok(out)
}

/// Appends one key component.
pub fn encode_component(value: &KalamValue, out: &mut Vec<u8>) -> Result<(), &'static str> {
    use KalamValue as V;
    match value {
        V::Boolean(b) => out.push(u8::from(*b)),
        V::SmallInt(v) => out.extend_from_slice(&((*v as u16) ^ (1 << 15)).to_be_bytes()),
        V::Int(v) | V::Date(v) => out.extend_from_slice(&((*v as u32) ^ (1 << 31)).to_be_bytes()),
        V::BigInt(v) | V::Timestamp(v) | V::DateTime(v) | V::Time(v) => {
            out.extend_from_slice(&((*v as u64) ^ (1 << 63)).to_be_bytes())
        }
        V::Float(v) => {
            let bits = v.to_bits();
            let ordered = if bits >> 31 == 1 {
                !bits
            } else {
                bits ^ (1 << 31)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        V::Double(v) => {
            let bits = v.to_bits();
            let ordered = if bits >> 63 == 1 {
                !bits
            } else {
                bits ^ (1 << 63)
            };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        V::Decimal(v) => out.extend_from_slice(&((*v as u128) ^ (1 << 127)).to_be_bytes()),
        V::Uuid(u) => out.extend_from_slice(u),
        V::Text(s) => escape_into(s.as_bytes(), out),
        V::Bytes(b) => escape_into(b, out),
        V::Null => return Err("a primary key cannot be NULL"),
        V::Json(_) => return Err("a JSON value cannot be part of a primary key"),
        V::Embedding(_) => return Err("an EMBEDDING cannot be part of a primary key"),
    }
    Ok(())
}

fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == ESCAPE {
            out.push(ESCAPED_ZERO);
        }
    }
    out.extend_from_slice(&[ESCAPE, TERMINATOR]);
}

/// Decodes a key encoded by [`encode_key`] for the given component types.
pub fn decode_key(bytes: &[u8], types: &[KalamDataType]) -> Result<Vec<KalamValue>> {
    let wrap = |source| Error::decode("primary key", source);
    let mut pos = 0;
    let mut out = Vec::with_capacity(types.len());
    for &t in types {
        let (value, used) = decode_component(&bytes[pos..], t).map_err(|e| wrap(shift(e, pos)))?;
        out.push(value);
        pos += used;
    }
    if pos != bytes.len() {
        return Err(wrap(DecodeError::TrailingBytes {
            extra: bytes.len() - pos,
        }));
    }
    Ok(out)
}

fn shift(e: DecodeError, by: usize) -> DecodeError {
    match e {
        DecodeError::Truncated { at, needed } => DecodeError::Truncated {
            at: at + by,
            needed,
        },
        other => other,
    }
}

fn fixed<const N: usize>(bytes: &[u8]) -> Result<[u8; N], DecodeError> {
    bytes
        .get(..N)
        .and_then(|s| s.try_into().ok())
        .ok_or(DecodeError::Truncated {
            at: 0,
            needed: N - bytes.len().min(N),
        })
}

fn decode_component(bytes: &[u8], t: KalamDataType) -> Result<(KalamValue, usize), DecodeError> {
    use KalamDataType as T;
    use KalamValue as V;
    Ok(match t {
        T::Boolean => match fixed::<1>(bytes)?[0] {
            0 => (V::Boolean(false), 1),
            1 => (V::Boolean(true), 1),
            byte => return Err(DecodeError::InvalidBool { byte, at: 0 }),
        },
        T::SmallInt => (
            V::SmallInt((u16::from_be_bytes(fixed(bytes)?) ^ (1 << 15)) as i16),
            2,
        ),
        T::Int | T::Date => {
            let v = (u32::from_be_bytes(fixed(bytes)?) ^ (1 << 31)) as i32;
            (if t == T::Int { V::Int(v) } else { V::Date(v) }, 4)
        }
        T::BigInt | T::Timestamp | T::DateTime | T::Time => {
            let v = (u64::from_be_bytes(fixed(bytes)?) ^ (1 << 63)) as i64;
            let value = match t {
                T::BigInt => V::BigInt(v),
                T::Timestamp => V::Timestamp(v),
                T::DateTime => V::DateTime(v),
                _ => V::Time(v),
            };
            (value, 8)
        }
        T::Float => {
            let o = u32::from_be_bytes(fixed(bytes)?);
            let bits = if o >> 31 == 1 { o ^ (1 << 31) } else { !o };
            (V::Float(f32::from_bits(bits)), 4)
        }
        T::Double => {
            let o = u64::from_be_bytes(fixed(bytes)?);
            let bits = if o >> 63 == 1 { o ^ (1 << 63) } else { !o };
            (V::Double(f64::from_bits(bits)), 8)
        }
        T::Decimal { .. } => (
            V::Decimal((u128::from_be_bytes(fixed(bytes)?) ^ (1 << 127)) as i128),
            16,
        ),
        T::Uuid => (V::Uuid(fixed(bytes)?), 16),
        T::Text => {
            let (raw, used) = unescape(bytes)?;
            let text = String::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { at: 0 })?;
            (V::Text(text), used)
        }
        T::Bytes => {
            let (raw, used) = unescape(bytes)?;
            (V::Bytes(raw), used)
        }
        other => {
            return Err(DecodeError::Invalid {
                reason: format!("{other} cannot be a key component"),
            });
        }
    })
}

fn unescape(bytes: &[u8]) -> Result<(Vec<u8>, usize), DecodeError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != ESCAPE {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(&TERMINATOR) => return Ok((out, i + 2)),
            Some(&ESCAPED_ZERO) => {
                out.push(0);
                i += 2;
            }
            Some(&byte) => {
                return Err(DecodeError::Invalid {
                    reason: format!("bad escape 0x00 0x{byte:02x} at byte {}", i + 1),
                });
            }
            None => break,
        }
    }
    Err(DecodeError::Truncated {
        at: bytes.len(),
        needed: 2,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(v: KalamValue) -> Vec<u8> {
        encode_key(&[v], &["k"]).unwrap()
    }

    #[test]
    fn nulls_and_json_are_refused_with_the_column_name() {
        let err = encode_key(&[KalamValue::Int(1), KalamValue::Null], &["a", "b"]).unwrap_err();
        assert!(err.to_string().contains("`b`"), "{err}");
        assert!(encode_key(&[KalamValue::Json("{}".into())], &["j"]).is_err());
    }

    #[test]
    fn strings_with_zero_bytes_keep_their_order() {
        let a = key(KalamValue::Text("a".into()));
        let a0 = key(KalamValue::Text("a\0".into()));
        let a00 = key(KalamValue::Text("a\0\0".into()));
        let a1 = key(KalamValue::Text("a\u{1}".into()));
        assert!(a < a0 && a0 < a00 && a00 < a1);
    }

    #[test]
    fn truncated_and_garbage_keys_give_errors() {
        let types = [KalamDataType::BigInt, KalamDataType::Text];
        let good = encode_key(
            &[KalamValue::BigInt(-5), KalamValue::Text("x\0y".into())],
            &[],
        )
        .unwrap();
        for cut in 0..good.len() {
            assert!(decode_key(&good[..cut], &types).is_err(), "cut at {cut}");
        }
        let mut long = good.clone();
        long.push(7);
        assert!(decode_key(&long, &types).is_err());
        assert!(decode_key(&[0, 0, 0, 0, 0, 0, 0, 0, b'a', 0, 7], &types).is_err());
    }

    fn key_type() -> impl Strategy<Value = KalamDataType> {
        prop_oneof![
            Just(KalamDataType::Boolean),
            Just(KalamDataType::SmallInt),
            Just(KalamDataType::Int),
            Just(KalamDataType::Date),
            Just(KalamDataType::BigInt),
            Just(KalamDataType::Timestamp),
            Just(KalamDataType::Float),
            Just(KalamDataType::Double),
            Just(KalamDataType::Decimal {
                precision: 38,
                scale: 0
            }),
            Just(KalamDataType::Uuid),
            Just(KalamDataType::Text),
            Just(KalamDataType::Bytes),
        ]
    }

    fn value_of(t: KalamDataType) -> BoxedStrategy<KalamValue> {
        match t {
            KalamDataType::Boolean => any::<bool>().prop_map(KalamValue::Boolean).boxed(),
            KalamDataType::SmallInt => any::<i16>().prop_map(KalamValue::SmallInt).boxed(),
            KalamDataType::Int => any::<i32>().prop_map(KalamValue::Int).boxed(),
            KalamDataType::Date => any::<i32>().prop_map(KalamValue::Date).boxed(),
            KalamDataType::BigInt => any::<i64>().prop_map(KalamValue::BigInt).boxed(),
            KalamDataType::Timestamp => any::<i64>().prop_map(KalamValue::Timestamp).boxed(),
            KalamDataType::Float => any::<f32>().prop_map(KalamValue::Float).boxed(),
            KalamDataType::Double => any::<f64>().prop_map(KalamValue::Double).boxed(),
            KalamDataType::Decimal { .. } => any::<i128>().prop_map(KalamValue::Decimal).boxed(),
            KalamDataType::Uuid => any::<[u8; 16]>().prop_map(KalamValue::Uuid).boxed(),
            KalamDataType::Text => ".{0,6}".prop_map(KalamValue::Text).boxed(),
            _ => proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1u8), Just(255u8), any::<u8>()],
                0..8,
            )
            .prop_map(KalamValue::Bytes)
            .boxed(),
        }
    }

    fn scalar() -> impl Strategy<Value = (KalamDataType, KalamValue)> {
        key_type().prop_flat_map(|t| (Just(t), value_of(t)))
    }

    /// Two values of the same, randomly chosen type.
    fn same_type_pair() -> impl Strategy<Value = (KalamDataType, KalamValue, KalamValue)> {
        key_type().prop_flat_map(|t| (Just(t), value_of(t), value_of(t)))
    }

    proptest! {
        #[test]
        fn key_components_round_trip((t, v) in scalar()) {
            let bytes = key(v.clone());
            let back = decode_key(&bytes, &[t]).unwrap();
            prop_assert_eq!(back[0].total_cmp(&v), std::cmp::Ordering::Equal);
        }

        #[test]
        fn key_order_equals_value_order((_, a, b) in same_type_pair()) {
            prop_assert_eq!(key(a.clone()).cmp(&key(b.clone())), a.total_cmp(&b));
        }

        #[test]
        fn composite_key_order_is_lexicographic(
            a in (any::<i64>(), ".{0,4}", any::<i32>()),
            b in (any::<i64>(), ".{0,4}", any::<i32>()),
        ) {
            let enc = |(x, s, y): &(i64, String, i32)| encode_key(
                &[KalamValue::BigInt(*x), KalamValue::Text(s.clone()), KalamValue::Int(*y)],
                &[],
            ).unwrap();
            prop_assert_eq!(enc(&a).cmp(&enc(&b)), a.cmp(&b));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_key(&bytes, &[KalamDataType::Text, KalamDataType::BigInt]);
            let _ = decode_key(&bytes, &[KalamDataType::Double, KalamDataType::Bytes]);
        }
    }
}
