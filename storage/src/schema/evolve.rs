//! Schema evolution: the changes `ALTER TABLE` makes to a definition, each producing a new
//! `SchemaVersion` and keeping the old one in the history.

use super::{ColumnDefinition, SchemaVersion, TableDefinition};
use crate::codec::KalamValue;
use crate::error::{Error, Result};
use crate::types::KalamDataType;

/// One change to a table's columns.
#[derive(Debug, Clone, PartialEq)]
pub enum SchemaChange {
    /// Appends a column; a NOT NULL column needs a default (old rows read it).
    AddColumn(ColumnDefinition),
    /// Removes a non-key column; its values stay in old rows and files but are never read.
    DropColumn(String),
    /// Renames a non-key column; old rows and files keep their names and are matched by id.
    RenameColumn {
        /// The current name.
        from: String,
        /// The new name.
        to: String,
    },
    /// Widens a non-key column's type (see [`can_widen`]); old values are cast on read.
    ModifyColumn {
        /// The column.
        name: String,
        /// The wider type.
        data_type: KalamDataType,
    },
}

impl std::fmt::Display for SchemaChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::AddColumn(c) => write!(f, "ADD COLUMN {} {}", c.name, c.data_type),
            Self::DropColumn(c) => write!(f, "DROP COLUMN {c}"),
            Self::RenameColumn { from, to } => write!(f, "RENAME COLUMN {from} TO {to}"),
            Self::ModifyColumn { name, data_type } => {
                write!(f, "MODIFY COLUMN {name} {data_type}")
            }
        }
    }
}

/// Whether every value of `from` is exactly representable in `to` (a widening).
pub fn can_widen(from: KalamDataType, to: KalamDataType) -> bool {
    use KalamDataType::*;
    matches!(
        (from, to),
        (SmallInt, Int) | (SmallInt, BigInt) | (Int, BigInt) | (Float, Double)
    )
}

impl TableDefinition {
    /// The definition after `change`: a new schema version (the current one moves to the
    /// history). Errors name the table and the column; the key columns cannot change.
    pub fn evolve(&self, change: &SchemaChange, now_ms: i64) -> Result<TableDefinition> {
        let table = self.id.to_string();
        let bad = |reason: String| Error::InvalidSchema {
            table: table.clone(),
            reason,
        };
        let find = |name: &str| -> Result<usize> {
            let i = self
                .columns()
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| bad(format!("no column `{name}`")))?;
            if self.columns()[i].primary_key {
                return Err(bad(format!(
                    "primary-key column `{name}` cannot be dropped or changed"
                )));
            }
            Ok(i)
        };
        let mut columns = self.columns().to_vec();
        match change {
            SchemaChange::AddColumn(c) => {
                if self.schema.column(&c.name).is_some() {
                    return Err(bad(format!("column `{}` already exists", c.name)));
                }
                if c.primary_key {
                    return Err(bad(format!(
                        "column `{}`: a primary-key column cannot be added",
                        c.name
                    )));
                }
                if !c.nullable && c.default.as_ref().is_none_or(KalamValue::is_null) {
                    return Err(bad(format!(
                        "NOT NULL column `{}` needs a DEFAULT for the rows already stored",
                        c.name
                    )));
                }
                let mut c = c.clone();
                c.id = self.max_column_id() + 1;
                columns.push(c);
            }
            SchemaChange::DropColumn(name) => {
                columns.remove(find(name)?);
            }
            SchemaChange::RenameColumn { from, to } => {
                let i = find(from)?;
                if self.schema.column(to).is_some() {
                    return Err(bad(format!("column `{to}` already exists")));
                }
                columns[i].name = to.clone();
            }
            SchemaChange::ModifyColumn { name, data_type } => {
                let i = find(name)?;
                let from = columns[i].data_type;
                if from == *data_type {
                    return Err(bad(format!("column `{name}` already is {data_type}")));
                }
                if !can_widen(from, *data_type) {
                    return Err(bad(format!(
                        "column `{name}` cannot change from {from} to {data_type}: only \
                         widening (SMALLINT->INT->BIGINT, FLOAT->DOUBLE) keeps every value"
                    )));
                }
                let c = &mut columns[i];
                c.data_type = *data_type;
                c.default = c.default.take().map(|v| v.coerce(*data_type).unwrap_or(v));
            }
        }
        for (i, c) in columns.iter_mut().enumerate() {
            c.ordinal = i as u32;
        }
        let mut next = self.clone();
        next.history.push(self.schema.clone());
        next.schema = SchemaVersion {
            version: self.schema.version + 1,
            columns,
            created_at_ms: now_ms,
            change: change.to_string(),
        };
        next.validate()?;
        Ok(next)
    }

    /// The highest column id any version used; new columns take the next one.
    fn max_column_id(&self) -> u32 {
        std::iter::once(&self.schema)
            .chain(&self.history)
            .flat_map(|s| &s.columns)
            .map(|c| c.id)
            .max()
            .unwrap_or(0)
    }
}

impl SchemaVersion {
    /// The column with stable id `id`.
    pub fn column_by_id(&self, id: u32) -> Option<&ColumnDefinition> {
        self.columns.iter().find(|c| c.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{StorageId, TableId};
    use crate::schema::{TableOptions, TableType};

    fn def() -> TableDefinition {
        TableDefinition::new(
            "app.t".parse::<TableId>().unwrap(),
            TableType::Shared,
            vec![
                ColumnDefinition::new("id", KalamDataType::BigInt).primary_key(),
                ColumnDefinition::new("n", KalamDataType::Int),
                ColumnDefinition::new("f", KalamDataType::Float),
            ],
            StorageId::local(),
            TableOptions::default(),
            0,
        )
        .unwrap()
    }

    #[test]
    fn every_change_bumps_the_version_and_keeps_the_history() {
        let v2 = def()
            .evolve(
                &SchemaChange::AddColumn(ColumnDefinition::new("x", KalamDataType::Text)),
                1,
            )
            .unwrap();
        let v3 = v2
            .evolve(
                &SchemaChange::RenameColumn {
                    from: "n".into(),
                    to: "count".into(),
                },
                2,
            )
            .unwrap();
        let v4 = v3
            .evolve(
                &SchemaChange::ModifyColumn {
                    name: "count".into(),
                    data_type: KalamDataType::BigInt,
                },
                3,
            )
            .unwrap();
        let v5 = v4.evolve(&SchemaChange::DropColumn("f".into()), 4).unwrap();
        assert_eq!(v5.schema.version, 5);
        assert_eq!(v5.history.len(), 4);
        let names: Vec<_> = v5.columns().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "count", "x"]);
        assert_eq!(v5.schema.column("count").unwrap().id, 2);
        assert_eq!(v5.schema.column("x").unwrap().id, 4);
        assert_eq!(v5.version(1).unwrap().column_by_id(2).unwrap().name, "n");
        assert_eq!(TableDefinition::decode(&v5.encode()).unwrap(), v5);
    }

    #[test]
    fn a_re_added_column_gets_a_new_id() {
        let dropped = def()
            .evolve(&SchemaChange::DropColumn("n".into()), 1)
            .unwrap();
        let again = dropped
            .evolve(
                &SchemaChange::AddColumn(ColumnDefinition::new("n", KalamDataType::Int)),
                2,
            )
            .unwrap();
        assert_eq!(again.schema.column("n").unwrap().id, 4);
    }

    #[test]
    fn key_columns_narrowing_and_bad_adds_are_refused() {
        let d = def();
        let refused = [
            SchemaChange::DropColumn("id".into()),
            SchemaChange::RenameColumn {
                from: "id".into(),
                to: "key".into(),
            },
            SchemaChange::ModifyColumn {
                name: "id".into(),
                data_type: KalamDataType::Text,
            },
            SchemaChange::ModifyColumn {
                name: "n".into(),
                data_type: KalamDataType::SmallInt,
            },
            SchemaChange::ModifyColumn {
                name: "n".into(),
                data_type: KalamDataType::Text,
            },
            SchemaChange::DropColumn("missing".into()),
            SchemaChange::RenameColumn {
                from: "n".into(),
                to: "f".into(),
            },
            SchemaChange::AddColumn(ColumnDefinition::new("n", KalamDataType::Int)),
            SchemaChange::AddColumn(ColumnDefinition::new("m", KalamDataType::Int).not_null()),
            SchemaChange::AddColumn(ColumnDefinition::new("Bad", KalamDataType::Int)),
        ];
        for change in refused {
            let err = d.evolve(&change, 1).unwrap_err();
            assert!(
                matches!(err, Error::InvalidSchema { .. }),
                "{change}: {err}"
            );
        }
    }
}
