//! Row codec throughput: a 1M-row, 8-column arrow batch to binary rows and back, next to
//! postcard (a generic serde codec) encoding and decoding the same rows as structs.

use std::hint::black_box;
use std::sync::Arc;

use arrow::array::{
    BooleanArray, Float64Array, Int16Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kalamstore_storage::codec::{decode_batch, encode_batch};
use kalamstore_storage::{ColumnDefinition, KalamDataType, SystemColumns};
use serde::{Deserialize, Serialize};

const ROWS: usize = 1_000_000;

/// The same record as a plain struct, for postcard.
#[derive(Serialize, Deserialize)]
struct Message {
    id: i64,
    author: String,
    body: String,
    score: f64,
    likes: i32,
    pinned: bool,
    sent_at: i64,
    kind: i16,
    seq: i64,
    updated: i64,
    deleted: bool,
}

fn columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
        ColumnDefinition::new("author", KalamDataType::Text),
        ColumnDefinition::new("body", KalamDataType::Text),
        ColumnDefinition::new("score", KalamDataType::Double),
        ColumnDefinition::new("likes", KalamDataType::Int),
        ColumnDefinition::new("pinned", KalamDataType::Boolean),
        ColumnDefinition::new("sent_at", KalamDataType::Timestamp),
        ColumnDefinition::new("kind", KalamDataType::SmallInt),
    ]
}

fn data() -> (RecordBatch, Vec<SystemColumns>, Vec<Message>) {
    let authors: Vec<String> = (0..ROWS).map(|i| format!("user_{}", i % 1000)).collect();
    let bodies: Vec<String> = (0..ROWS)
        .map(|i| format!("message {i}: the quick brown fox jumps over the lazy dog"))
        .collect();
    let schema = Arc::new(arrow::datatypes::Schema::new(
        columns()
            .iter()
            .map(ColumnDefinition::arrow_field)
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..ROWS as i64)),
            Arc::new(StringArray::from_iter_values(&authors)),
            Arc::new(StringArray::from_iter_values(&bodies)),
            Arc::new(Float64Array::from_iter_values(
                (0..ROWS).map(|i| i as f64 * 0.5),
            )),
            Arc::new(Int32Array::from_iter_values(
                (0..ROWS).map(|i| (i % 500) as i32),
            )),
            Arc::new(BooleanArray::from_iter((0..ROWS).map(|i| Some(i % 7 == 0)))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                (0..ROWS as i64).map(|i| 1_700_000_000_000_000 + i),
            )),
            Arc::new(Int16Array::from_iter_values(
                (0..ROWS).map(|i| (i % 4) as i16),
            )),
        ],
    )
    .expect("benchmark batch matches its schema");
    let system: Vec<SystemColumns> = (0..ROWS as i64)
        .map(|i| SystemColumns {
            seq: i,
            updated: i * 1000,
            deleted: false,
        })
        .collect();
    let structs = (0..ROWS)
        .map(|i| Message {
            id: i as i64,
            author: authors[i].clone(),
            body: bodies[i].clone(),
            score: i as f64 * 0.5,
            likes: (i % 500) as i32,
            pinned: i % 7 == 0,
            sent_at: 1_700_000_000_000_000 + i as i64,
            kind: (i % 4) as i16,
            seq: i as i64,
            updated: i as i64 * 1000,
            deleted: false,
        })
        .collect();
    (batch, system, structs)
}

fn codec(c: &mut Criterion) {
    let (batch, system, structs) = data();
    let schema = batch.schema();
    let rows = encode_batch(&batch, 1, &system).expect("encode");
    let postcard_rows: Vec<Vec<u8>> = structs
        .iter()
        .map(|m| postcard::to_allocvec(m).expect("postcard encode"))
        .collect();

    let mut group = c.benchmark_group("codec_encode_1m_rows");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("kalamstore_batch_to_rows", |b| {
        b.iter(|| black_box(encode_batch(black_box(&batch), 1, &system).expect("encode")))
    });
    group.bench_function("postcard_structs_to_rows", |b| {
        b.iter(|| {
            black_box(
                structs
                    .iter()
                    .map(|m| postcard::to_allocvec(m).expect("postcard encode"))
                    .collect::<Vec<_>>(),
            )
        })
    });
    group.finish();

    let mut group = c.benchmark_group("codec_decode_1m_rows");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("kalamstore_rows_to_batch", |b| {
        b.iter(|| black_box(decode_batch(rows.iter(), &schema, true).expect("decode")))
    });
    group.bench_function("postcard_rows_to_structs", |b| {
        b.iter(|| {
            black_box(
                postcard_rows
                    .iter()
                    .map(|r| postcard::from_bytes::<Message>(r).expect("postcard decode"))
                    .collect::<Vec<_>>(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
