//! Tests of schema validation and the binary definition format.

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::ids::{NamespaceId, TableName};

fn id() -> TableId {
    "chat.messages".parse().unwrap()
}

fn messages() -> TableDefinition {
    TableDefinition::new(
        id(),
        TableType::User,
        vec![
            ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
            ColumnDefinition::new("body", KalamDataType::Text).not_null(),
            ColumnDefinition::new(
                "score",
                KalamDataType::Decimal {
                    precision: 10,
                    scale: 2,
                },
            )
            .with_default(KalamValue::Decimal(150)),
            ColumnDefinition::new("vec", KalamDataType::Embedding { dim: 3 }),
        ],
        StorageId::local(),
        TableOptions {
            flush_policy: "rows:1000,interval:60".parse().unwrap(),
            comment: Some("chat messages".into()),
            ..TableOptions::default()
        },
        1_700_000_000_000,
    )
    .unwrap()
}

#[test]
fn a_definition_round_trips_through_its_binary_form() {
    let mut def = messages();
    def.history.push(def.schema.clone());
    def.schema.version = 2;
    def.schema.change = "ADD COLUMN x".into();
    def.schema.columns.push(ColumnDefinition {
        id: 5,
        ordinal: 4,
        ..ColumnDefinition::new("x", KalamDataType::Uuid)
    });
    let bytes = def.encode();
    assert_eq!(TableDefinition::decode(&bytes).unwrap(), def);
    assert_eq!(def.version(1).unwrap().columns.len(), 4);
}

/// What a writer from before `format_version`, options and history existed stored.
#[derive(Clone, PartialEq, Message)]
struct LegacyDefinition {
    #[prost(string, tag = "2")]
    namespace: String,
    #[prost(string, tag = "3")]
    table: String,
    #[prost(int32, tag = "4")]
    table_type: i32,
    #[prost(message, optional, tag = "7")]
    schema: Option<proto::SchemaVersionProto>,
}

#[test]
fn a_definition_from_an_older_format_still_decodes() {
    let current = proto::TableDefinitionProto::decode(messages().encode().as_slice()).unwrap();
    let legacy = LegacyDefinition {
        namespace: "chat".into(),
        table: "messages".into(),
        table_type: 1,
        schema: current.schema,
    }
    .encode_to_vec();
    let def = TableDefinition::decode(&legacy).unwrap();
    assert_eq!(def.table_type, TableType::Shared);
    assert_eq!(def.storage_id, StorageId::local());
    assert_eq!(def.options, TableOptions::default());
    assert_eq!(def.columns().len(), 4);
}

#[test]
fn a_definition_from_a_newer_format_is_refused() {
    let mut p = proto::TableDefinitionProto::decode(messages().encode().as_slice()).unwrap();
    p.format_version = DEFINITION_FORMAT_VERSION + 1;
    let err = TableDefinition::decode(&p.encode_to_vec()).unwrap_err();
    assert!(
        format!("{:?}", err).contains("UnsupportedVersion"),
        "{err:?}"
    );
}

#[test]
fn invalid_definitions_name_the_table_and_the_problem() {
    let col = |n: &str| ColumnDefinition::new(n, KalamDataType::Int);
    let cases: Vec<(Vec<ColumnDefinition>, TableType, Option<u64>, &str)> = vec![
        (vec![], TableType::User, None, "at least one column"),
        (vec![col("a")], TableType::User, None, "PRIMARY KEY"),
        (
            vec![col("a").primary_key(), col("a")],
            TableType::User,
            None,
            "twice",
        ),
        (
            vec![col("A").primary_key()],
            TableType::User,
            None,
            "column name",
        ),
        (
            vec![col("_seq").primary_key()],
            TableType::User,
            None,
            "column name",
        ),
        (
            vec![ColumnDefinition::new("j", KalamDataType::Json).primary_key()],
            TableType::User,
            None,
            "cannot be part of a primary key",
        ),
        (
            vec![
                col("a").primary_key(),
                col("b").with_default(KalamValue::Text("x".into())),
            ],
            TableType::User,
            None,
            "default",
        ),
        (
            vec![col("a").primary_key()],
            TableType::Stream,
            None,
            "TTL_SECONDS",
        ),
        (
            vec![col("a").primary_key()],
            TableType::Shared,
            Some(5),
            "STREAM tables only",
        ),
    ];
    for (columns, table_type, ttl, expected) in cases {
        let options = TableOptions {
            ttl_seconds: ttl,
            ..TableOptions::default()
        };
        let err = TableDefinition::new(id(), table_type, columns, StorageId::local(), options, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("chat.messages") && err.contains(expected),
            "{expected}: {err}"
        );
    }
}

#[test]
fn the_arrow_schema_has_user_then_system_columns() {
    let schema = messages().arrow_schema(true);
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["id", "body", "score", "vec", "_seq", "_updated", "_deleted"]
    );
    assert!(!schema.field(0).is_nullable());
    assert_eq!(schema.metadata()[SCHEMA_VERSION_METADATA], "1");
}

#[test]
fn flush_policies_parse_and_print() {
    let p: FlushPolicy = "rows:500, interval:30".parse().unwrap();
    assert_eq!(p.rows, Some(500));
    assert_eq!(p.interval, Some(Duration::from_secs(30)));
    assert_eq!(p.to_string(), "rows:500,interval:30");
    for bad in [
        "rows",
        "rows:0",
        "rows:-1",
        "speed:3",
        "rows:1,rows:2",
        "interval:x",
    ] {
        assert!(bad.parse::<FlushPolicy>().is_err(), "{bad}");
    }
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = TableDefinition::decode(&bytes);
    }

    #[test]
    fn generated_definitions_round_trip(
        names in proptest::collection::btree_set("[a-z][a-z0-9_]{0,8}", 1..8),
        shared in any::<bool>(),
    ) {
        let columns = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let c = ColumnDefinition::new(n.clone(), if i == 0 { KalamDataType::Text } else { KalamDataType::Double });
                if i == 0 { c.primary_key() } else { c }
            })
            .collect();
        let def = TableDefinition::new(
            TableId::new(NamespaceId::new("ns").unwrap(), TableName::new("t").unwrap()),
            if shared { TableType::Shared } else { TableType::User },
            columns,
            StorageId::new("s3_main").unwrap(),
            TableOptions::default(),
            42,
        ).unwrap();
        prop_assert_eq!(TableDefinition::decode(&def.encode()).unwrap(), def);
    }
}
