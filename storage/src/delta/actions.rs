//! The Delta log's actions as kalamstore writes and reads them (one JSON object per line of a
//! commit), and a table's schema in Delta's JSON form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::schema::TableDefinition;
use crate::types::KalamDataType;

/// The partition column of USER tables: the scope (user id) of each file.
pub(crate) const USER_PARTITION: &str = "_user";

/// One line of a commit.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// The reader and writer features the table needs.
    Protocol(Protocol),
    /// Schema, partitioning and configuration.
    MetaData(MetaData),
    /// A data file (with its deletion vector) joins the table.
    Add(Add),
    /// A data file (with the deletion vector it had) leaves the table.
    Remove(Remove),
    /// Who wrote the commit and why.
    CommitInfo(Value),
    /// Anything else another writer put in the log.
    Other,
}

impl Action {
    /// The action as one JSON line, `{"<kind>": {...}}`.
    pub(crate) fn to_line(&self) -> serde_json::Result<String> {
        let (key, value) = match self {
            Self::Protocol(p) => ("protocol", serde_json::to_value(p)?),
            Self::MetaData(m) => ("metaData", serde_json::to_value(m)?),
            Self::Add(a) => ("add", serde_json::to_value(a)?),
            Self::Remove(r) => ("remove", serde_json::to_value(r)?),
            Self::CommitInfo(c) => ("commitInfo", c.clone()),
            Self::Other => ("other", Value::Null),
        };
        serde_json::to_string(&json!({ key: value }))
    }

    /// Parses one line of a commit.
    pub(crate) fn parse(line: &str) -> serde_json::Result<Self> {
        let value: Value = serde_json::from_str(line)?;
        let Some((key, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
            return Ok(Self::Other);
        };
        Ok(match key.as_str() {
            "protocol" => Self::Protocol(serde_json::from_value(inner.clone())?),
            "metaData" => Self::MetaData(serde_json::from_value(inner.clone())?),
            "add" => Self::Add(serde_json::from_value(inner.clone())?),
            "remove" => Self::Remove(serde_json::from_value(inner.clone())?),
            "commitInfo" => Self::CommitInfo(inner.clone()),
            _ => Self::Other,
        })
    }
}

/// The `protocol` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Protocol {
    pub(crate) min_reader_version: u32,
    pub(crate) min_writer_version: u32,
    pub(crate) reader_features: Vec<String>,
    pub(crate) writer_features: Vec<String>,
}

/// The `metaData` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MetaData {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    pub(crate) format: Format,
    pub(crate) schema_string: String,
    pub(crate) partition_columns: Vec<String>,
    pub(crate) configuration: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) created_time: Option<i64>,
}

/// The `format` of [`MetaData`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Format {
    pub(crate) provider: String,
    pub(crate) options: BTreeMap<String, String>,
}

/// A deletion vector descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DvDescriptor {
    /// `u` (a file named from a UUID) or `i` (inline).
    pub(crate) storage_type: String,
    pub(crate) path_or_inline_dv: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) offset: Option<u32>,
    pub(crate) size_in_bytes: u32,
    pub(crate) cardinality: u64,
}

/// The `add` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Add {
    pub(crate) path: String,
    pub(crate) partition_values: BTreeMap<String, Option<String>>,
    pub(crate) size: u64,
    pub(crate) modification_time: i64,
    pub(crate) data_change: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stats: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deletion_vector: Option<DvDescriptor>,
}

/// The `remove` action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Remove {
    pub(crate) path: String,
    pub(crate) deletion_timestamp: i64,
    pub(crate) data_change: bool,
    pub(crate) extended_file_metadata: bool,
    pub(crate) partition_values: BTreeMap<String, Option<String>>,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deletion_vector: Option<DvDescriptor>,
}

impl Remove {
    /// The removal of the file `add` added, with its deletion vector as it was.
    pub(crate) fn of(add: &Add, data_change: bool, now_ms: i64) -> Self {
        Self {
            path: add.path.clone(),
            deletion_timestamp: now_ms,
            data_change,
            extended_file_metadata: true,
            partition_values: add.partition_values.clone(),
            size: add.size,
            deletion_vector: add.deletion_vector.clone(),
        }
    }
}

/// The Delta type of a column type, or `None` for types Delta has no equivalent of (TIME,
/// UUID, EMBEDDING): those columns are left out of the published schema.
fn delta_type(t: KalamDataType) -> Option<String> {
    use KalamDataType as T;
    Some(
        match t {
            T::Boolean => "boolean",
            T::SmallInt => "short",
            T::Int => "integer",
            T::BigInt => "long",
            T::Float => "float",
            T::Double => "double",
            T::Text | T::Json => "string",
            T::Bytes => "binary",
            T::Date => "date",
            T::Timestamp => "timestamp_ntz",
            T::DateTime => "timestamp",
            T::Decimal { precision, scale } => {
                return Some(format!("decimal({precision},{scale})"));
            }
            T::Null | T::Time | T::Uuid | T::Embedding { .. } => return None,
        }
        .to_owned(),
    )
}

/// Whether a published schema needs the `timestampNtz` feature.
pub(crate) fn needs_timestamp_ntz(def: &TableDefinition) -> bool {
    def.columns()
        .iter()
        .any(|c| c.data_type == KalamDataType::Timestamp)
}

/// The published columns of `def`: every user column Delta can type, then `_seq` and
/// `_updated` when `with_system`, then `_user` for USER tables. Every field is nullable (so
/// readers need no `invariants` feature).
pub(crate) fn schema_string(
    def: &TableDefinition,
    with_system: bool,
    user_partition: bool,
) -> String {
    let field =
        |name: &str, t: &str| json!({"name": name, "type": t, "nullable": true, "metadata": {}});
    let mut fields: Vec<Value> = def
        .columns()
        .iter()
        .filter_map(|c| Some(field(&c.name, &delta_type(c.data_type)?)))
        .collect();
    if with_system {
        fields.push(field(crate::codec::SEQ_COLUMN, "long"));
        fields.push(field(crate::codec::UPDATED_COLUMN, "long"));
    }
    if user_partition {
        fields.push(field(USER_PARTITION, "string"));
    }
    json!({"type": "struct", "fields": fields}).to_string()
}

/// The protocol of a published table.
pub(crate) fn protocol(def: &TableDefinition) -> Protocol {
    let mut features = vec!["deletionVectors".to_owned()];
    if needs_timestamp_ntz(def) {
        features.push("timestampNtz".to_owned());
    }
    Protocol {
        min_reader_version: 3,
        min_writer_version: 7,
        reader_features: features.clone(),
        writer_features: features,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_round_trip_through_json() {
        let add = Add {
            path: "_user=alice/000000000000002a.parquet".into(),
            partition_values: BTreeMap::from([("_user".into(), Some("alice".into()))]),
            size: 10,
            modification_time: 1,
            data_change: true,
            stats: Some("{\"numRecords\":3}".into()),
            deletion_vector: Some(DvDescriptor {
                storage_type: "u".into(),
                path_or_inline_dv: "vBn[lx{q8@P<9BNH/isA".into(),
                offset: Some(1),
                size_in_bytes: 36,
                cardinality: 2,
            }),
        };
        let line = Action::Add(add.clone()).to_line().unwrap();
        assert!(line.starts_with("{\"add\":{"), "{line}");
        assert!(line.contains("\"storageType\":\"u\""), "{line}");
        match Action::parse(&line).unwrap() {
            Action::Add(back) => assert_eq!(back, add),
            other => panic!("{other:?}"),
        }
        let other = Action::parse("{\"txn\":{\"appId\":\"x\",\"version\":1}}").unwrap();
        assert!(matches!(other, Action::Other));
    }
}
