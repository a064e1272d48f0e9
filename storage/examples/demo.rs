//! The foundation in one run: a table definition, rows encoded by the columnar codec, written
//! through the `StorageBackend` trait (in-memory engine) under memcomparable keys, and read back.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::util::pretty::pretty_format_batches;
use kalamstore_storage::codec::{decode_batch, encode_batch, encode_key};
use kalamstore_storage::seq::{SeqGenerator, now_nanos};
use kalamstore_storage::{
    ColumnDefinition, KalamDataType, KalamValue, MemoryBackend, Partition, ScanRequest,
    StorageBackend, StorageId, SystemColumns, TableDefinition, TableOptions, TableType, WriteBatch,
    scan_all,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let table = TableDefinition::new(
        "chat.messages".parse()?,
        TableType::User,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text).not_null(),
            ColumnDefinition::new("sent_at", KalamDataType::Timestamp),
        ],
        StorageId::local(),
        TableOptions::default(),
        0,
    )?;
    let stored = table.encode();
    println!(
        "table {} ({} bytes as protobuf), columns:",
        table.id,
        stored.len()
    );
    for c in TableDefinition::decode(&stored)?.columns() {
        println!(
            "  {} {}{}",
            c.name,
            c.data_type,
            if c.primary_key { " PRIMARY KEY" } else { "" }
        );
    }

    let batch = RecordBatch::try_new(
        table.arrow_schema(false),
        vec![
            Arc::new(Int64Array::from(vec![3, -1, 2])),
            Arc::new(StringArray::from(vec!["hello", "first!", "how are you?"])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_700_000_000_000_000),
                None,
                None,
            ])),
        ],
    )?;
    let seq = SeqGenerator::new(1)?;
    let system: Vec<SystemColumns> = (0..batch.num_rows())
        .map(|_| SystemColumns {
            seq: seq.next(),
            updated: now_nanos(),
            deleted: false,
        })
        .collect();
    let rows = encode_batch(&batch, table.schema.version, &system)?;

    let backend = MemoryBackend::new();
    let partition = Partition::new("chat.messages")?;
    backend.create_partition(&partition).await?;
    let ids = batch
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or("id column")?;
    let mut writes = WriteBatch::new();
    for (i, row) in rows.iter().enumerate() {
        let key = encode_key(&[KalamValue::BigInt(ids.value(i))], &["id"])?;
        writes.put(&partition, key, row.to_vec());
    }
    backend.batch(writes).await?;
    println!(
        "wrote {} rows ({} bytes) through the {} engine",
        rows.len(),
        rows.total_bytes(),
        backend.name()
    );

    let stored_rows = scan_all(&backend, &partition, ScanRequest::default()).await?;
    let back = decode_batch(
        stored_rows.iter().map(|(_, v)| v.as_ref()),
        &table.arrow_schema(false),
        true,
    )?;
    println!(
        "read back in primary-key order:\n{}",
        pretty_format_batches(&[back])?
    );
    Ok(())
}
