//! Round trips of the columnar codec against the per-value path.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use proptest::prelude::*;

use super::*;
use crate::types::arrow_field;

fn column_type() -> impl Strategy<Value = KalamDataType> {
    prop_oneof![
        Just(KalamDataType::Null),
        Just(KalamDataType::Boolean),
        Just(KalamDataType::SmallInt),
        Just(KalamDataType::Int),
        Just(KalamDataType::BigInt),
        Just(KalamDataType::Float),
        Just(KalamDataType::Double),
        Just(KalamDataType::Text),
        Just(KalamDataType::Timestamp),
        Just(KalamDataType::Date),
        Just(KalamDataType::DateTime),
        Just(KalamDataType::Time),
        Just(KalamDataType::Json),
        Just(KalamDataType::Bytes),
        Just(KalamDataType::Uuid),
        Just(KalamDataType::Decimal {
            precision: 20,
            scale: 3
        }),
        (1u32..5).prop_map(|dim| KalamDataType::Embedding { dim }),
    ]
}

fn value_of(t: KalamDataType) -> BoxedStrategy<KalamValue> {
    use KalamDataType as T;
    let v: BoxedStrategy<KalamValue> = match t {
        T::Null => return Just(KalamValue::Null).boxed(),
        T::Boolean => any::<bool>().prop_map(KalamValue::Boolean).boxed(),
        T::SmallInt => any::<i16>().prop_map(KalamValue::SmallInt).boxed(),
        T::Int => any::<i32>().prop_map(KalamValue::Int).boxed(),
        T::BigInt => any::<i64>().prop_map(KalamValue::BigInt).boxed(),
        T::Float => any::<f32>().prop_map(KalamValue::Float).boxed(),
        T::Double => any::<f64>().prop_map(KalamValue::Double).boxed(),
        T::Text => ".{0,12}".prop_map(KalamValue::Text).boxed(),
        T::Json => ".{0,12}".prop_map(KalamValue::Json).boxed(),
        T::Timestamp => any::<i64>().prop_map(KalamValue::Timestamp).boxed(),
        T::DateTime => any::<i64>().prop_map(KalamValue::DateTime).boxed(),
        T::Date => any::<i32>().prop_map(KalamValue::Date).boxed(),
        T::Time => any::<i64>().prop_map(KalamValue::Time).boxed(),
        T::Bytes => proptest::collection::vec(any::<u8>(), 0..12)
            .prop_map(KalamValue::Bytes)
            .boxed(),
        T::Uuid => any::<[u8; 16]>().prop_map(KalamValue::Uuid).boxed(),
        T::Decimal { .. } => (-10i128.pow(19)..10i128.pow(19))
            .prop_map(KalamValue::Decimal)
            .boxed(),
        T::Embedding { dim } => proptest::collection::vec(any::<f32>(), dim as usize)
            .prop_map(KalamValue::Embedding)
            .boxed(),
    };
    prop_oneof![1 => Just(KalamValue::Null), 4 => v].boxed()
}

/// A schema of 1..6 columns and 0..20 rows of values for it.
fn table() -> impl Strategy<Value = (Vec<KalamDataType>, Vec<Vec<KalamValue>>)> {
    proptest::collection::vec(column_type(), 1..6).prop_flat_map(|types| {
        let row = types.iter().map(|t| value_of(*t)).collect::<Vec<_>>();
        (Just(types), proptest::collection::vec(row, 0..20))
    })
}

fn schema_of(types: &[KalamDataType]) -> Arc<Schema> {
    let fields: Vec<Field> = types
        .iter()
        .enumerate()
        .map(|(i, t)| arrow_field(&format!("c{i}"), *t, true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn batch_of(types: &[KalamDataType], rows: &[Vec<KalamValue>]) -> RecordBatch {
    let columns = types
        .iter()
        .enumerate()
        .map(|(c, t)| {
            let values: Vec<KalamValue> = rows.iter().map(|r| r[c].clone()).collect();
            array_from_values("c", *t, &values).unwrap()
        })
        .collect();
    RecordBatch::try_new(schema_of(types), columns).unwrap()
}

fn same(a: &KalamValue, b: &KalamValue) -> bool {
    a.tag() == b.tag() && a.total_cmp(b).is_eq()
}

proptest! {
    #[test]
    fn batches_round_trip_through_rows((types, rows) in table()) {
        let batch = batch_of(&types, &rows);
        let system: Vec<SystemColumns> = (0..rows.len())
            .map(|i| SystemColumns { seq: i as i64, updated: -(i as i64), deleted: i % 3 == 0 })
            .collect();
        let encoded = encode_batch(&batch, 7, &system).unwrap();
        prop_assert_eq!(encoded.len(), rows.len());

        // Each encoded row equals the per-value encoding of the same values.
        for (i, bytes) in encoded.iter().enumerate() {
            let row = Row { schema_version: 7, values: rows[i].clone(), system: system[i] };
            let expected = row.encode();
            prop_assert_eq!(bytes, expected.as_slice());
        }

        let decoded = decode_batch(encoded.iter(), &schema_of(&types), true).unwrap();
        prop_assert_eq!(decoded.num_columns(), types.len() + 3);
        for (c, t) in types.iter().enumerate() {
            for (r, row) in rows.iter().enumerate() {
                let got = value_at(decoded.column(c).as_ref(), *t, r).unwrap();
                prop_assert!(same(&got, &row[c]), "row {} col {}: {:?} vs {:?}", r, c, got, row[c]);
            }
        }
        let seq = decoded.column(types.len()).as_primitive::<arrow::datatypes::Int64Type>();
        let deleted = decoded.column(types.len() + 2).as_boolean();
        for (i, s) in system.iter().enumerate() {
            prop_assert_eq!(seq.value(i), s.seq);
            prop_assert_eq!(deleted.value(i), s.deleted);
        }
    }
}

proptest! {
    /// A projected decode reads past the columns it skips (every type) and decodes the others
    /// exactly as a full decode does; skipped columns come out all NULL, typed `Null`.
    #[test]
    fn a_projected_decode_skips_columns_of_every_type(
        (types, rows) in table(),
        mask in proptest::collection::vec(any::<bool>(), 6),
    ) {
        let batch = batch_of(&types, &rows);
        let system = vec![SystemColumns { seq: 3, updated: 4, deleted: false }; rows.len()];
        let encoded = encode_batch(&batch, 7, &system).unwrap();
        let keep = &mask[..types.len()];
        let schema = schema_of(&types);
        let mut decoder = BatchDecoder::projected(&schema, true, rows.len(), 0, Some(keep)).unwrap();
        for bytes in encoded.iter() {
            decoder.push(bytes).unwrap();
        }
        let decoded = decoder.finish().unwrap();
        prop_assert_eq!(decoded.num_columns(), types.len() + 3);
        for (c, t) in types.iter().enumerate() {
            let column = decoded.column(c);
            if !keep[c] {
                prop_assert_eq!(column.data_type(), &arrow::datatypes::DataType::Null);
                prop_assert_eq!(column.len(), rows.len());
                continue;
            }
            for (r, row) in rows.iter().enumerate() {
                let got = value_at(column.as_ref(), *t, r).unwrap();
                prop_assert!(same(&got, &row[c]), "row {} col {}: {:?} vs {:?}", r, c, got, row[c]);
            }
        }
        let seq = decoded.column(types.len()).as_primitive::<arrow::datatypes::Int64Type>();
        prop_assert!((0..rows.len()).all(|i| seq.value(i) == 3));
    }
}

#[test]
fn rows_from_an_older_schema_read_added_columns_as_null() {
    let old = batch_of(&[KalamDataType::BigInt], &[vec![KalamValue::BigInt(1)]]);
    let rows = encode_batch(&old, 1, &[SystemColumns::default()]).unwrap();
    let new_types = [KalamDataType::BigInt, KalamDataType::Text];
    let decoded = decode_batch(rows.iter(), &schema_of(&new_types), false).unwrap();
    assert_eq!(
        value_at(decoded.column(0).as_ref(), KalamDataType::BigInt, 0).unwrap(),
        KalamValue::BigInt(1)
    );
    assert!(decoded.column(1).is_null(0));
}

#[test]
fn a_value_of_the_wrong_type_is_a_decode_error_naming_the_row() {
    let batch = batch_of(
        &[KalamDataType::Text],
        &[vec![KalamValue::Text("x".into())]],
    );
    let rows = encode_batch(&batch, 1, &[SystemColumns::default()]).unwrap();
    let err = decode_batch(rows.iter(), &schema_of(&[KalamDataType::BigInt]), false).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("row 0"), "{chain}");
}

#[test]
fn garbage_bytes_decode_to_errors() {
    let schema = schema_of(&[KalamDataType::Text, KalamDataType::BigInt]);
    for garbage in [
        &b""[..],
        b"\x01",
        b"\x02\x00\x00\x00\x00\x00\x00",
        &[1u8; 40][..],
    ] {
        assert!(decode_batch([garbage], &schema, true).is_err());
    }
}

#[test]
fn a_decoder_refuses_rows_and_its_batch_after_a_failed_row() {
    let types = [KalamDataType::BigInt, KalamDataType::Text];
    let good = batch_of(
        &types,
        &[vec![KalamValue::BigInt(1), KalamValue::Text("a".into())]],
    );
    let good = encode_batch(&good, 1, &[SystemColumns::default()]).unwrap();
    // The first value decodes, the second has the wrong tag: the row is half appended.
    let bad = batch_of(
        &[KalamDataType::BigInt, KalamDataType::BigInt],
        &[vec![KalamValue::BigInt(2), KalamValue::BigInt(3)]],
    );
    let bad = encode_batch(&bad, 1, &[SystemColumns::default()]).unwrap();

    let mut decoder = BatchDecoder::with_data_capacity(&schema_of(&types), true, 4, 0).unwrap();
    decoder.push(good.get(0).unwrap()).unwrap();
    assert_eq!(decoder.len(), 1);
    assert!(decoder.push(bad.get(0).unwrap()).is_err());
    assert!(decoder.push(good.get(0).unwrap()).is_err());
    assert!(decoder.finish().is_err());

    let mut decoder = BatchDecoder::new(&schema_of(&types), false, 1).unwrap();
    decoder.push(good.get(0).unwrap()).unwrap();
    decoder.push(good.get(0).unwrap()).unwrap();
    let batch = decoder.finish().unwrap();
    assert_eq!((batch.num_rows(), batch.num_columns()), (2, 2));
}

#[test]
fn values_of_the_wrong_type_are_refused_by_column() {
    let err =
        array_from_values("age", KalamDataType::Int, &[KalamValue::Text("x".into())]).unwrap_err();
    assert!(err.to_string().contains("`age`"), "{err}");
    let too_wide = KalamValue::Decimal(10i128.pow(5));
    let t = KalamDataType::Decimal {
        precision: 5,
        scale: 0,
    };
    assert!(array_from_values("price", t, &[too_wide]).is_err());
}
