//! Table schemas, the single source of truth: `TableDefinition`, `ColumnDefinition`,
//! `SchemaVersion`, their validation, their arrow schema and their binary (protobuf) form.

mod evolve;
mod proto;

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};

pub use crate::codec::{DELETED_COLUMN, SEQ_COLUMN, UPDATED_COLUMN, system_fields};
use crate::codec::{KalamValue, MAX_COLUMNS};
use crate::error::{Error, Result};
use crate::ids::{StorageId, TableId};
use crate::types::{KalamDataType, arrow_field};

pub use evolve::{SchemaChange, can_widen};
pub use proto::DEFINITION_FORMAT_VERSION;

/// Arrow schema metadata key carrying the schema version.
pub const SCHEMA_VERSION_METADATA: &str = "kalamstore.schema_version";

/// The kind of a table: decides the key scope and whether rows are ever flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableType {
    /// One isolated keyspace per user.
    User,
    /// One keyspace for everybody.
    Shared,
    /// Rows live for a TTL in the hot engine and are never flushed.
    Stream,
}

impl fmt::Display for TableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::User => "USER",
            Self::Shared => "SHARED",
            Self::Stream => "STREAM",
        })
    }
}

/// Who may read a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AccessLevel {
    /// Anyone.
    Public,
    /// Only the owner (the default).
    #[default]
    Private,
    /// Named readers only.
    Restricted,
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Restricted => "restricted",
        })
    }
}

impl FromStr for AccessLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            "restricted" => Ok(Self::Restricted),
            _ => Err(Error::InvalidValue {
                column: "ACCESS_LEVEL".into(),
                reason: format!("`{s}` is not one of public, private, restricted"),
            }),
        }
    }
}

/// When buffered rows are flushed to Parquet: after `rows` buffered rows, every `interval`, or
/// whichever comes first. Neither set means manual flushes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushPolicy {
    /// Flush once a scope buffers this many rows.
    pub rows: Option<u64>,
    /// Flush buffered rows at least this often.
    pub interval: Option<Duration>,
}

impl FromStr for FlushPolicy {
    type Err = Error;

    /// Parses `rows:N`, `interval:S` or `rows:N,interval:S` (seconds).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidValue {
            column: "FLUSH_POLICY".into(),
            reason,
        };
        let mut policy = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("`{part}` is not `rows:N` or `interval:S`")))?;
            let n: u64 = value
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("`{value}` is not a positive whole number")))?;
            match key.trim().to_ascii_lowercase().as_str() {
                "rows" if policy.rows.is_none() => policy.rows = Some(n),
                "interval" if policy.interval.is_none() => {
                    policy.interval = Some(Duration::from_secs(n))
                }
                "rows" | "interval" => return Err(bad(format!("`{key}` is given twice"))),
                other => return Err(bad(format!("unknown flush policy key `{other}`"))),
            }
        }
        Ok(policy)
    }
}

impl fmt::Display for FlushPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.rows, self.interval) {
            (Some(r), Some(i)) => write!(f, "rows:{r},interval:{}", i.as_secs()),
            (Some(r), None) => write!(f, "rows:{r}"),
            (None, Some(i)) => write!(f, "interval:{}", i.as_secs()),
            (None, None) => f.write_str("manual"),
        }
    }
}

/// Whether a table's flushed state is published as a Delta Lake table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeltaPublishing {
    /// Published, with the user columns (the default).
    #[default]
    On,
    /// Not published.
    Off,
    /// Published with `_seq` and `_updated` too.
    WithSystemColumns,
}

impl fmt::Display for DeltaPublishing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::On => "on",
            Self::Off => "off",
            Self::WithSystemColumns => "with_system_columns",
        })
    }
}

impl FromStr for DeltaPublishing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(Self::On),
            "off" | "false" => Ok(Self::Off),
            "with_system_columns" => Ok(Self::WithSystemColumns),
            _ => Err(Error::InvalidValue {
                column: "DELTA".into(),
                reason: format!("`{s}` is not one of on, off, with_system_columns"),
            }),
        }
    }
}

/// How long a table's change log keeps its entries (`CHANGE_RETENTION`): a cursor older than
/// that gets a gap answer. Maintenance trims the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeRetention {
    /// Changes younger than this (by their `_seq`'s time).
    Duration(Duration),
    /// The newest this many changes.
    Rows(u64),
    /// No change log: writes log nothing, feeds refuse the table.
    Off,
}

impl ChangeRetention {
    /// The default: seven days, as Kafka keeps a topic.
    pub const DEFAULT: Self = Self::Duration(Duration::from_secs(7 * 24 * 3600));

    /// Whether writes append to the log.
    pub fn is_on(&self) -> bool {
        *self != Self::Off
    }
}

impl Default for ChangeRetention {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for ChangeRetention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duration(d) => {
                let s = d.as_secs();
                match (s % 86_400, s % 3600, s % 60) {
                    (0, _, _) => write!(f, "{}d", s / 86_400),
                    (_, 0, _) => write!(f, "{}h", s / 3600),
                    (_, _, 0) => write!(f, "{}m", s / 60),
                    _ => write!(f, "{s}s"),
                }
            }
            Self::Rows(n) => write!(f, "{n} rows"),
            Self::Off => f.write_str("off"),
        }
    }
}

impl FromStr for ChangeRetention {
    type Err = Error;
    /// `off`, `<n> rows`, or a duration `<n>s|m|h|d`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidValue {
            column: "CHANGE_RETENTION".into(),
            reason: format!("`{s}` is not `off`, `<n> rows` or a duration like `30m`, `12h`, `7d`"),
        };
        let t = s.trim().to_ascii_lowercase();
        if t == "off" {
            return Ok(Self::Off);
        }
        if let Some(n) = t.strip_suffix("rows").or_else(|| t.strip_suffix("row")) {
            let n: u64 = n.trim().parse().map_err(|_| bad())?;
            return if n == 0 {
                Err(bad())
            } else {
                Ok(Self::Rows(n))
            };
        }
        let split = t.len().checked_sub(1).ok_or_else(bad)?;
        let (n, unit) = t.split_at(split);
        let n: u64 = n.trim().parse().map_err(|_| bad())?;
        let secs = match unit {
            "s" => Some(n),
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(86_400),
            _ => None,
        }
        .filter(|s| *s > 0)
        .ok_or_else(bad)?;
        Ok(Self::Duration(Duration::from_secs(secs)))
    }
}

/// Per-table options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableOptions {
    /// When buffered rows are flushed.
    pub flush_policy: FlushPolicy,
    /// How long STREAM rows live, in seconds.
    pub ttl_seconds: Option<u64>,
    /// Who may read the table.
    pub access_level: AccessLevel,
    /// Free-text description.
    pub comment: Option<String>,
    /// Whether the flushed state is published as a Delta Lake table.
    pub delta: DeltaPublishing,
    /// How long the change log keeps changes.
    pub change_retention: ChangeRetention,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDefinition {
    /// Stable id, from 1: a rename keeps it, a dropped column's id is never reused, so old
    /// rows and files are matched to the current columns by id, not by name.
    pub id: u32,
    /// Column name, `^[a-z][a-z0-9_]*$`.
    pub name: String,
    /// Position in the row, from 0.
    pub ordinal: u32,
    /// The column's type.
    pub data_type: KalamDataType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the column is part of the primary key.
    pub primary_key: bool,
    /// Value used when an insert omits the column.
    pub default: Option<KalamValue>,
    /// Free-text description.
    pub comment: Option<String>,
}

impl ColumnDefinition {
    /// A nullable, non-key column without default.
    pub fn new(name: impl Into<String>, data_type: KalamDataType) -> Self {
        Self {
            id: 0,
            name: name.into(),
            ordinal: 0,
            data_type,
            nullable: true,
            primary_key: false,
            default: None,
            comment: None,
        }
    }

    /// Marks the column as (part of) the primary key, which also makes it NOT NULL.
    pub fn primary_key(mut self) -> Self {
        self.primary_key = true;
        self.nullable = false;
        self
    }

    /// Makes the column NOT NULL.
    pub fn not_null(mut self) -> Self {
        self.nullable = false;
        self
    }

    /// Sets the default value.
    pub fn with_default(mut self, value: KalamValue) -> Self {
        self.default = Some(value);
        self
    }

    /// The column's arrow field.
    pub fn arrow_field(&self) -> Field {
        arrow_field(&self.name, self.data_type, self.nullable)
    }
}

/// One version of a table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaVersion {
    /// Version number, from 1, bumped by every schema change.
    pub version: u32,
    /// Columns in ordinal order.
    pub columns: Vec<ColumnDefinition>,
    /// When this version was created, ms since the epoch.
    pub created_at_ms: i64,
    /// What changed from the previous version (e.g. `ADD COLUMN c`).
    pub change: String,
}

impl SchemaVersion {
    /// The arrow schema of the user columns, plus the system columns when `with_system`.
    pub fn arrow_schema(&self, with_system: bool) -> SchemaRef {
        let mut fields: Vec<Arc<Field>> = self
            .columns
            .iter()
            .map(|c| Arc::new(c.arrow_field()))
            .collect();
        if with_system {
            fields.extend(system_fields());
        }
        let metadata = std::collections::HashMap::from([(
            SCHEMA_VERSION_METADATA.to_owned(),
            self.version.to_string(),
        )]);
        Arc::new(Schema::new_with_metadata(fields, metadata))
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDefinition> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// A table: its identity, kind, storage, options, current columns and schema history.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDefinition {
    /// `namespace.table`.
    pub id: TableId,
    /// USER, SHARED or STREAM.
    pub table_type: TableType,
    /// Where the table's data lives.
    pub storage_id: StorageId,
    /// Flush policy, TTL, access level, comment.
    pub options: TableOptions,
    /// The current columns.
    pub schema: SchemaVersion,
    /// Earlier versions, oldest first.
    pub history: Vec<SchemaVersion>,
}

impl TableDefinition {
    /// A validated version-1 definition; ordinals and column ids are assigned from the column
    /// order.
    pub fn new(
        id: TableId,
        table_type: TableType,
        columns: Vec<ColumnDefinition>,
        storage_id: StorageId,
        options: TableOptions,
        created_at_ms: i64,
    ) -> Result<Self> {
        let columns = columns
            .into_iter()
            .enumerate()
            .map(|(i, mut c)| {
                c.ordinal = i as u32;
                c.id = i as u32 + 1;
                c
            })
            .collect();
        let def = Self {
            id,
            table_type,
            storage_id,
            options,
            schema: SchemaVersion {
                version: 1,
                columns,
                created_at_ms,
                change: "CREATE TABLE".into(),
            },
            history: Vec::new(),
        };
        def.validate()?;
        Ok(def)
    }

    /// The current columns.
    pub fn columns(&self) -> &[ColumnDefinition] {
        &self.schema.columns
    }

    /// The primary-key columns, in column order.
    pub fn primary_key(&self) -> impl Iterator<Item = &ColumnDefinition> {
        self.schema.columns.iter().filter(|c| c.primary_key)
    }

    /// The schema version `version`, current or historic.
    pub fn version(&self, version: u32) -> Option<&SchemaVersion> {
        std::iter::once(&self.schema)
            .chain(&self.history)
            .find(|s| s.version == version)
    }

    /// The arrow schema of the current version (see [`SchemaVersion::arrow_schema`]).
    pub fn arrow_schema(&self, with_system: bool) -> SchemaRef {
        self.schema.arrow_schema(with_system)
    }

    /// Checks every rule a definition must satisfy; errors name the table and the column.
    pub fn validate(&self) -> Result<()> {
        let bad = |reason: String| {
            Err(Error::InvalidSchema {
                table: self.id.to_string(),
                reason,
            })
        };
        let columns = &self.schema.columns;
        if columns.is_empty() {
            return bad("a table needs at least one column".into());
        }
        if columns.len() > MAX_COLUMNS {
            return bad(format!(
                "{} columns exceed the limit of {MAX_COLUMNS}",
                columns.len()
            ));
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for (i, c) in columns.iter().enumerate() {
            if c.id == 0 || !ids.insert(c.id) {
                return bad(format!(
                    "column `{}` has a missing or repeated id {}",
                    c.name, c.id
                ));
            }
            if let Err(e) = crate::ids::validate_name("column name", &c.name) {
                return bad(e.to_string());
            }
            if !names.insert(c.name.as_str()) {
                return bad(format!("column `{}` is defined twice", c.name));
            }
            if c.ordinal as usize != i {
                return bad(format!(
                    "column `{}` has ordinal {}, expected {i}",
                    c.name, c.ordinal
                ));
            }
            if let Err(reason) = c.data_type.validate() {
                return bad(format!("column `{}`: {reason}", c.name));
            }
            if c.primary_key {
                if c.nullable {
                    return bad(format!(
                        "primary-key column `{}` cannot be nullable",
                        c.name
                    ));
                }
                if !c.data_type.can_be_key() {
                    return bad(format!(
                        "column `{}` of type {} cannot be part of a primary key",
                        c.name, c.data_type
                    ));
                }
            }
            if let Some(default) = &c.default
                && (!default.fits(c.data_type) || (default.is_null() && !c.nullable))
            {
                return bad(format!(
                    "default {default:?} of column `{}` is not a {}{}",
                    c.name,
                    c.data_type,
                    if c.nullable { "" } else { " NOT NULL" }
                ));
            }
        }
        if !columns.iter().any(|c| c.primary_key) {
            return bad("a table needs a PRIMARY KEY column".into());
        }
        match (self.table_type, self.options.ttl_seconds) {
            (TableType::Stream, None | Some(0)) => {
                return bad("a STREAM table needs TTL_SECONDS > 0".into());
            }
            (TableType::User | TableType::Shared, Some(_)) => {
                return bad("TTL_SECONDS applies to STREAM tables only".into());
            }
            _ => {}
        }
        Ok(())
    }

    /// Encodes the definition in its binary (protobuf) form.
    pub fn encode(&self) -> Vec<u8> {
        proto::encode(self)
    }

    /// Decodes a stored definition, of this or an older format version.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        proto::decode(bytes)
    }
}

#[cfg(test)]
mod tests;
