//! `KalamValue`: one typed value, and its `[tag][payload]` encoding (layout on `KalamDataType`).

use std::cmp::Ordering;

use crate::error::DecodeError;
use crate::types::KalamDataType;

/// One value of a column, or NULL.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum KalamValue {
    /// SQL NULL.
    Null,
    /// BOOLEAN.
    Boolean(bool),
    /// SMALLINT.
    SmallInt(i16),
    /// INT.
    Int(i32),
    /// BIGINT.
    BigInt(i64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// TEXT.
    Text(String),
    /// TIMESTAMP, microseconds since the epoch.
    Timestamp(i64),
    /// DATE, days since the epoch.
    Date(i32),
    /// DATETIME, microseconds since the epoch (UTC).
    DateTime(i64),
    /// TIME, microseconds since midnight.
    Time(i64),
    /// JSON text.
    Json(String),
    /// BYTES.
    Bytes(Vec<u8>),
    /// UUID, 16 bytes.
    Uuid([u8; 16]),
    /// DECIMAL unscaled value; precision and scale come from the column.
    Decimal(i128),
    /// EMBEDDING components.
    Embedding(Vec<f32>),
}

/// Tag bytes, named, for the decoders' `match`es.
pub(crate) mod tag {
    pub(crate) const NULL: u8 = 0x00;
    pub(crate) const BOOLEAN: u8 = 0x01;
    pub(crate) const INT: u8 = 0x02;
    pub(crate) const BIGINT: u8 = 0x03;
    pub(crate) const DOUBLE: u8 = 0x04;
    pub(crate) const TEXT: u8 = 0x05;
    pub(crate) const TIMESTAMP: u8 = 0x06;
    pub(crate) const DATE: u8 = 0x07;
    pub(crate) const DATETIME: u8 = 0x08;
    pub(crate) const JSON: u8 = 0x09;
    pub(crate) const BYTES: u8 = 0x0A;
    pub(crate) const TIME: u8 = 0x0B;
    pub(crate) const SMALLINT: u8 = 0x0C;
    pub(crate) const FLOAT: u8 = 0x0D;
    pub(crate) const UUID: u8 = 0x0E;
    pub(crate) const DECIMAL: u8 = 0x0F;
    pub(crate) const EMBEDDING: u8 = 0x10;
}

impl KalamValue {
    /// Bytes this value takes in memory, its heap part included (what caches charge).
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Self::Text(s) | Self::Json(s) => s.capacity(),
                Self::Bytes(b) => b.capacity(),
                Self::Embedding(v) => v.capacity() * std::mem::size_of::<f32>(),
                _ => 0,
            }
    }

    /// The wire tag of this value.
    pub const fn tag(&self) -> u8 {
        match self {
            Self::Null => tag::NULL,
            Self::Boolean(_) => tag::BOOLEAN,
            Self::SmallInt(_) => tag::SMALLINT,
            Self::Int(_) => tag::INT,
            Self::BigInt(_) => tag::BIGINT,
            Self::Float(_) => tag::FLOAT,
            Self::Double(_) => tag::DOUBLE,
            Self::Text(_) => tag::TEXT,
            Self::Timestamp(_) => tag::TIMESTAMP,
            Self::Date(_) => tag::DATE,
            Self::DateTime(_) => tag::DATETIME,
            Self::Time(_) => tag::TIME,
            Self::Json(_) => tag::JSON,
            Self::Bytes(_) => tag::BYTES,
            Self::Uuid(_) => tag::UUID,
            Self::Decimal(_) => tag::DECIMAL,
            Self::Embedding(_) => tag::EMBEDDING,
        }
    }

    /// Whether this is NULL.
    pub const fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// Whether this value can be stored in a column of `data_type` (NULL fits every type;
    /// nullability is the schema's business).
    pub fn fits(&self, data_type: KalamDataType) -> bool {
        match (self, data_type) {
            (Self::Null, _) => true,
            (Self::Embedding(v), KalamDataType::Embedding { dim }) => v.len() == dim as usize,
            (Self::Decimal(v), KalamDataType::Decimal { precision, .. }) => {
                v.unsigned_abs() < 10u128.pow(u32::from(precision))
            }
            (v, t) => v.tag() == t.tag(),
        }
    }

    /// This value converted to `data_type` where SQL would (integers to wider integers,
    /// floats, timestamps and decimals, in range; FLOAT to DOUBLE); `None` when it does not
    /// fit.
    pub fn coerce(&self, data_type: KalamDataType) -> Option<KalamValue> {
        use KalamDataType as T;
        use KalamValue as V;
        if self.fits(data_type) {
            return Some(self.clone());
        }
        let int = match self {
            V::SmallInt(v) => i64::from(*v),
            V::Int(v) => i64::from(*v),
            V::BigInt(v) => *v,
            V::Float(v) if data_type == T::Double => return Some(V::Double(f64::from(*v))),
            _ => return None,
        };
        Some(match data_type {
            T::SmallInt => V::SmallInt(i16::try_from(int).ok()?),
            T::Int => V::Int(i32::try_from(int).ok()?),
            T::BigInt => V::BigInt(int),
            T::Double => V::Double(int as f64),
            T::Float => V::Float(int as f32),
            T::Timestamp => V::Timestamp(int),
            T::DateTime => V::DateTime(int),
            T::Decimal { scale, .. } => {
                let v = V::Decimal(
                    i128::from(int).checked_mul(10i128.checked_pow(u32::try_from(scale).ok()?)?)?,
                );
                v.fits(data_type).then_some(v)?
            }
            _ => return None,
        })
    }

    /// [`coerce`](Self::coerce) taking the value: one that already fits moves through
    /// without a copy; one that does not convert comes back as the error.
    pub fn coerce_into(self, data_type: KalamDataType) -> Result<KalamValue, KalamValue> {
        if self.fits(data_type) {
            return Ok(self);
        }
        self.coerce(data_type).ok_or(self)
    }

    /// Compares two values of the same type; floats use IEEE total order. Values of different
    /// types (or NULL) compare by tag, so the order is total.
    pub fn total_cmp(&self, other: &Self) -> Ordering {
        use KalamValue as V;
        match (self, other) {
            (V::Boolean(a), V::Boolean(b)) => a.cmp(b),
            (V::SmallInt(a), V::SmallInt(b)) => a.cmp(b),
            (V::Int(a), V::Int(b)) | (V::Date(a), V::Date(b)) => a.cmp(b),
            (V::BigInt(a), V::BigInt(b))
            | (V::Timestamp(a), V::Timestamp(b))
            | (V::DateTime(a), V::DateTime(b))
            | (V::Time(a), V::Time(b)) => a.cmp(b),
            (V::Float(a), V::Float(b)) => a.total_cmp(b),
            (V::Double(a), V::Double(b)) => a.total_cmp(b),
            (V::Text(a), V::Text(b)) | (V::Json(a), V::Json(b)) => a.cmp(b),
            (V::Bytes(a), V::Bytes(b)) => a.cmp(b),
            (V::Uuid(a), V::Uuid(b)) => a.cmp(b),
            (V::Decimal(a), V::Decimal(b)) => a.cmp(b),
            (V::Embedding(a), V::Embedding(b)) => a
                .iter()
                .zip(b)
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| a.len().cmp(&b.len())),
            (a, b) => a.tag().cmp(&b.tag()),
        }
    }

    /// Appends `[tag][payload]` to `out`.
    ///
    /// Text, JSON and bytes longer than `u32::MAX` cannot be encoded; callers check lengths
    /// when they validate a row (see `row::MAX_VALUE_LEN`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
        match self {
            Self::Null => {}
            Self::Boolean(v) => out.push(u8::from(*v)),
            Self::SmallInt(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Int(v) | Self::Date(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::BigInt(v) | Self::Timestamp(v) | Self::DateTime(v) | Self::Time(v) => {
                out.extend_from_slice(&v.to_le_bytes())
            }
            Self::Float(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Text(s) | Self::Json(s) => put_bytes(out, s.as_bytes()),
            Self::Bytes(b) => put_bytes(out, b),
            Self::Uuid(u) => out.extend_from_slice(u),
            Self::Decimal(v) => out.extend_from_slice(&v.to_le_bytes()),
            Self::Embedding(v) => {
                put_len(out, v.len());
                for x in v {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
    }

    /// The encoded size of this value, tag included.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            Self::Text(s) | Self::Json(s) => 4 + s.len(),
            Self::Bytes(b) => 4 + b.len(),
            Self::Embedding(v) => 4 + 4 * v.len(),
            Self::Null => 0,
            Self::Boolean(_) => 1,
            Self::SmallInt(_) => 2,
            Self::Int(_) | Self::Date(_) | Self::Float(_) => 4,
            Self::BigInt(_)
            | Self::Timestamp(_)
            | Self::DateTime(_)
            | Self::Time(_)
            | Self::Double(_) => 8,
            Self::Uuid(_) | Self::Decimal(_) => 16,
        }
    }

    /// Decodes one `[tag][payload]` from `reader`.
    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = reader.pos();
        let tag = reader.u8()?;
        Ok(match tag {
            tag::NULL => Self::Null,
            tag::BOOLEAN => Self::Boolean(reader.bool()?),
            tag::SMALLINT => Self::SmallInt(i16::from_le_bytes(reader.array()?)),
            tag::INT => Self::Int(reader.i32()?),
            tag::DATE => Self::Date(reader.i32()?),
            tag::BIGINT => Self::BigInt(reader.i64()?),
            tag::TIMESTAMP => Self::Timestamp(reader.i64()?),
            tag::DATETIME => Self::DateTime(reader.i64()?),
            tag::TIME => Self::Time(reader.i64()?),
            tag::FLOAT => Self::Float(f32::from_le_bytes(reader.array()?)),
            tag::DOUBLE => Self::Double(f64::from_le_bytes(reader.array()?)),
            tag::TEXT => Self::Text(reader.str()?.to_owned()),
            tag::JSON => Self::Json(reader.str()?.to_owned()),
            tag::BYTES => Self::Bytes(reader.len_prefixed()?.to_vec()),
            tag::UUID => Self::Uuid(reader.array()?),
            tag::DECIMAL => Self::Decimal(i128::from_le_bytes(reader.array()?)),
            tag::EMBEDDING => {
                let raw = reader.f32_vector()?;
                Self::Embedding(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            }
            other => return Err(DecodeError::UnknownTag { tag: other, at }),
        })
    }

    /// Decodes exactly one value from `bytes`.
    pub fn decode_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let value = Self::decode(&mut reader)?;
        reader.finish()?;
        Ok(value)
    }
}

/// Appends a u32 length prefix; lengths above `u32::MAX` are refused before encoding.
pub(crate) fn put_len(out: &mut Vec<u8>, len: usize) {
    debug_assert!(u32::try_from(len).is_ok(), "length checked by the caller");
    out.extend_from_slice(&(len as u32).to_le_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn bool(&mut self) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(DecodeError::InvalidBool { byte, at }),
        }
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A `u32`-length-prefixed byte string, checking the length against what is left.
    pub(crate) fn len_prefixed(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.u32()? as usize;
        if len > self.remaining() {
            return Err(DecodeError::LengthTooLarge {
                at,
                len,
                remaining: self.remaining(),
            });
        }
        self.take(len)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos + 4;
        std::str::from_utf8(self.len_prefixed()?).map_err(|_| DecodeError::InvalidUtf8 { at })
    }

    /// An embedding payload: `u32` dimension then `dim` little-endian f32s, as raw bytes.
    pub(crate) fn f32_vector(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let dim = self.u32()? as usize;
        match dim.checked_mul(4) {
            Some(len) if len <= self.remaining() => self.take(len),
            _ => Err(DecodeError::LengthTooLarge {
                at,
                len: dim.saturating_mul(4),
                remaining: self.remaining(),
            }),
        }
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}
