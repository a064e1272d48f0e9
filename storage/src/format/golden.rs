//! Golden bytes of every stored format: a row, a primary key, a hot key, meta-partition keys, a
//! deletion vector, a manifest entry and a table definition. Each is checked both ways: this
//! build encodes the value to exactly these bytes, and decodes these bytes to the value. A test
//! that fails here is a format change: make it a deliberate, versioned one (a new version byte
//! or field, with the old bytes still decoding), never an edit of the expected bytes alone.

use crate::codec::{KalamValue, Row, SystemColumns, decode_key, encode_key};
use crate::format::partitions::{dv_key, manifest_key, scope_prefix};
use crate::format::{DeletionVector, FileMeta};
use crate::ids::{KeyScope, UserId};
use crate::schema::{ColumnDefinition, SchemaChange, TableDefinition, TableOptions, TableType};
use crate::types::KalamDataType;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    // Invariant: the constants below are even-length lowercase hex.
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("golden constants are hex"))
        .collect()
}

fn assert_golden(what: &str, encoded: &[u8], golden: &str) {
    assert_eq!(
        hex(encoded),
        golden,
        "the {what} format changed: version it deliberately"
    );
}

/// Row format 1: version, schema version u32 LE, column count u16 LE, `[tag][payload]` values,
/// then `_seq`, `_updated` (i64 LE) and `_deleted`.
const ROW: &str = "01030000000300032a000000000000000502000000686900\
                   070000000000000000002a36fe9c971700";

#[test]
fn a_row() {
    let row = Row {
        schema_version: 3,
        values: vec![
            KalamValue::BigInt(42),
            KalamValue::Text("hi".into()),
            KalamValue::Null,
        ],
        system: SystemColumns {
            seq: 7,
            updated: 1_700_000_000_000_000_000,
            deleted: false,
        },
    };
    assert_golden("row", &row.encode(), ROW);
    assert_eq!(Row::decode(&unhex(ROW)).unwrap(), row);
}

/// A composite key (BIGINT, TEXT): sign-flipped big-endian, then the text with 0x00 escaped
/// and the 0x00 0x01 terminator.
const KEY: &str = "800000000000002a6100ff620001";

#[test]
fn a_primary_key_and_its_hot_and_meta_keys() {
    let values = [KalamValue::BigInt(42), KalamValue::Text("a\0b".into())];
    let key = encode_key(&values, &["id", "name"]).unwrap();
    assert_golden("primary key", &key, KEY);
    let types = [KalamDataType::BigInt, KalamDataType::Text];
    assert_eq!(decode_key(&unhex(KEY), &types).unwrap(), values);

    let ann = KeyScope::User(UserId::new("ann").unwrap());
    let mut hot = scope_prefix(&ann);
    hot.extend_from_slice(&key);
    assert_golden("hot key", &hot, &format!("616e6e00{KEY}"));
    assert_golden(
        "manifest key",
        &manifest_key(&ann, 5),
        "66616e6e000000000000000005",
    );
    assert_golden(
        "deletion vector key",
        &dv_key(&ann, 5),
        "76616e6e000000000000000005",
    );
}

/// Magic (u32 LE), a portable 64-bit Roaring bitmap of positions 1, 5 and 100, CRC-32 (BE).
const DV: &str = "d1d339640100000000000000000000003a3000000100000000000200\
                  1000000001000500640003135803";

#[test]
fn a_deletion_vector() {
    let mut dv = DeletionVector::new();
    for position in [1, 5, 100] {
        dv.insert(position);
    }
    assert_golden("deletion vector", &dv.encode(), DV);
    let decoded = DeletionVector::decode(&unhex(DV), "golden").unwrap();
    assert_eq!(decoded.iter().collect::<Vec<_>>(), [1, 5, 100]);
}

/// Protobuf fields 1..=10 of `FileMetaProto`.
const FILE_META: &str = "08cdd7a6bcd6e848121f6170702f636861742f5f757365723d616e6e2f30303031\
                         2e7061727175657418e807208080042a088000000000000001320880000000000003\
                         e8380a401448025080d095ffbc31";

#[test]
fn a_manifest_entry() {
    let meta = FileMeta {
        id: 0x0001_2345_6789_abcd,
        path: "app/chat/_user=ann/0001.parquet".into(),
        rows: 1000,
        size: 65536,
        min_key: encode_key(&[KalamValue::BigInt(1)], &["id"]).unwrap(),
        max_key: encode_key(&[KalamValue::BigInt(1000)], &["id"]).unwrap(),
        min_seq: 10,
        max_seq: 20,
        schema_version: 2,
        created_at_ms: 1_700_000_000_000,
    };
    assert_golden("manifest entry", &meta.encode(), FILE_META);
    assert_eq!(FileMeta::decode(&unhex(FILE_META), "golden").unwrap(), meta);
}

/// A USER table with a key, a default, a comment, a TTL-less option set and one schema change
/// (so one history entry).
const TABLE_DEFINITION: &str = "080112036170701a04636861742a056c6f63616c32062a04636861743a5808\
                                02120c0a0269641a0208032801400112160a04626f647910011a0208053206\
                                0501000000784002120e0a02617410021a0208062001400318e8d795ffbc31\
                                221741444420434f4c554d4e2061742054494d455354414d50423d0801120c\
                                0a0269641a0208032801400112160a04626f647910011a0208053206050100\
                                00007840021880d095ffbc31220c435245415445205441424c45";

#[test]
fn a_table_definition() {
    let columns = vec![
        ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
        ColumnDefinition::new("body", KalamDataType::Text)
            .not_null()
            .with_default(KalamValue::Text("x".into())),
    ];
    let options = TableOptions {
        comment: Some("chat".into()),
        ..TableOptions::default()
    };
    let def = TableDefinition::new(
        "app.chat".parse().unwrap(),
        TableType::User,
        columns,
        crate::ids::StorageId::local(),
        options,
        1_700_000_000_000,
    )
    .unwrap()
    .evolve(
        &SchemaChange::AddColumn(ColumnDefinition::new("at", KalamDataType::Timestamp)),
        1_700_000_001_000,
    )
    .unwrap();
    assert_golden("table definition", &def.encode(), TABLE_DEFINITION);
    assert_eq!(
        TableDefinition::decode(&unhex(TABLE_DEFINITION)).unwrap(),
        def
    );
}
