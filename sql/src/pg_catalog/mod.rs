//! `pg_catalog`: the Postgres catalog tables Postgres clients read to list and describe
//! tables (psql's `\dt` and `\d`, BI tools), built from the store's namespaces and tables, and
//! the catalog functions those queries call. Namespaces are schemas, kalamstore tables are
//! ordinary tables (`relkind` `r`), a table's key is its primary-key index.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int16Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use futures::future::BoxFuture;
use kalamstore_storage::{KalamDataType, Store, TableDefinition};

use crate::error::external;

mod empty;
mod functions;

use empty::EMPTY;

use crate::leaf::{BatchSource, BatchTable, ProjectedSource};
pub(crate) use functions::register_functions;

/// The schema name.
pub(crate) const PG_CATALOG: &str = "pg_catalog";

/// The oid of the first namespace; tables follow the namespaces.
const FIRST_OID: i64 = 16384;

/// One catalog table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Namespace,
    Class,
    Attribute,
    Type,
    Am,
    Attrdef,
    Index,
    /// Tables psql consults for sections kalamstore has none of (policies, triggers, ...):
    /// empty, with the columns those queries read.
    Empty(&'static str),
}

const TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_am",
    "pg_attrdef",
    "pg_index",
];

impl Table {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "pg_namespace" => Self::Namespace,
            "pg_class" => Self::Class,
            "pg_attribute" => Self::Attribute,
            "pg_type" => Self::Type,
            "pg_am" => Self::Am,
            "pg_attrdef" => Self::Attrdef,
            "pg_index" => Self::Index,
            other => Self::Empty(EMPTY.iter().find(|(n, _)| *n == other)?.0),
        })
    }

    fn schema(self) -> SchemaRef {
        use DataType::{Boolean as B, Int16 as I16, Int32 as I32, Int64 as O, Utf8 as S};
        let cols: Vec<(&str, DataType)> = match self {
            Self::Namespace => vec![("oid", O), ("nspname", S), ("nspowner", O)],
            Self::Class => vec![
                ("oid", O),
                ("relname", S),
                ("relnamespace", O),
                ("relkind", S),
                ("relowner", O),
                ("relam", O),
                ("reltuples", DataType::Float32),
                ("relchecks", I16),
                ("relhasindex", B),
                ("relhasrules", B),
                ("relhastriggers", B),
                ("relrowsecurity", B),
                ("relforcerowsecurity", B),
                ("relispartition", B),
                ("reltablespace", O),
                ("reloftype", O),
                ("relpersistence", S),
                ("relreplident", S),
                ("reltoastrelid", O),
                ("relpartbound", S),
            ],
            Self::Attribute => vec![
                ("attrelid", O),
                ("attname", S),
                ("atttypid", O),
                ("atttypmod", I32),
                ("attnum", I16),
                ("attnotnull", B),
                ("atthasdef", B),
                ("attisdropped", B),
                ("attcollation", O),
                ("attidentity", S),
                ("attgenerated", S),
                ("attstattarget", I32),
                ("attstorage", S),
            ],
            Self::Type => vec![
                ("oid", O),
                ("typname", S),
                ("typnamespace", O),
                ("typcollation", O),
                ("typtype", S),
            ],
            Self::Am => vec![("oid", O), ("amname", S)],
            Self::Attrdef => vec![("oid", O), ("adrelid", O), ("adnum", I16), ("adbin", S)],
            Self::Index => vec![
                ("indexrelid", O),
                ("indrelid", O),
                ("indisprimary", B),
                ("indisunique", B),
                ("indisclustered", B),
                ("indisvalid", B),
                ("indkey", S),
                ("indisreplident", B),
                ("indexdef", S),
            ],
            Self::Empty(name) => EMPTY
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c.to_vec())
                .unwrap_or_default(),
        };
        Arc::new(Schema::new(
            cols.into_iter()
                .map(|(n, t)| Field::new(n, t, true))
                .collect::<Vec<_>>(),
        ))
    }
}

/// Every kalamstore type's Postgres oid and `format_type` name.
const TYPES: &[(i64, &str, &str)] = &[
    (16, "bool", "boolean"),
    (17, "bytea", "bytea"),
    (20, "int8", "bigint"),
    (21, "int2", "smallint"),
    (23, "int4", "integer"),
    (25, "text", "text"),
    (114, "json", "json"),
    (700, "float4", "real"),
    (701, "float8", "double precision"),
    (1021, "_float4", "real[]"),
    (1082, "date", "date"),
    (1083, "time", "time without time zone"),
    (1114, "timestamp", "timestamp without time zone"),
    (1184, "timestamptz", "timestamp with time zone"),
    (1700, "numeric", "numeric"),
    (2950, "uuid", "uuid"),
];

/// A column type's oid and type modifier, as Postgres encodes them.
fn pg_type(t: KalamDataType) -> (i64, i32) {
    use KalamDataType as K;
    match t {
        K::Null | K::Text => (25, -1),
        K::Boolean => (16, -1),
        K::SmallInt => (21, -1),
        K::Int => (23, -1),
        K::BigInt => (20, -1),
        K::Float => (700, -1),
        K::Double => (701, -1),
        K::Json => (114, -1),
        K::Timestamp => (1114, -1),
        K::DateTime => (1184, -1),
        K::Date => (1082, -1),
        K::Time => (1083, -1),
        K::Bytes => (17, -1),
        K::Uuid => (2950, -1),
        K::Decimal { precision, scale } => (
            1700,
            ((i32::from(precision) << 16) | i32::from(scale as u8)) + 4,
        ),
        K::Embedding { .. } => (1021, -1),
        // A type added later reads as text until it gets its own oid here.
        _ => (25, -1),
    }
}

/// `pg_catalog` over a store.
#[derive(Debug)]
pub(crate) struct PgCatalog {
    store: Store,
}

impl PgCatalog {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        TABLES
            .iter()
            .copied()
            .chain(EMPTY.iter().map(|(n, _)| *n))
            .map(str::to_owned)
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(table) = Table::named(name) else {
            return Ok(None);
        };
        let rows = CatalogRows {
            table,
            projection: None,
            store: self.store.clone(),
        };
        Ok(Some(Arc::new(BatchTable::new(
            table.schema(),
            TableType::View,
            rows,
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        Table::named(name).is_some()
    }
}

/// The rows of one catalog table, read when a query runs.
#[derive(Debug, Clone)]
struct CatalogRows {
    table: Table,
    projection: Option<Vec<usize>>,
    store: Store,
}

impl ProjectedSource for CatalogRows {
    fn projected(&self, projection: Option<Vec<usize>>) -> Self {
        Self {
            projection,
            ..self.clone()
        }
    }
}

impl BatchSource for CatalogRows {
    const NAME: &'static str = "PgCatalogExec";

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.table)
    }

    fn batch(self) -> BoxFuture<'static, DfResult<RecordBatch>> {
        Box::pin(async move {
            let batch = build(self.table, &self.store).await?;
            match self.projection {
                Some(p) => Ok(batch.project(&p)?),
                None => Ok(batch),
            }
        })
    }
}

fn texts<'a>(v: impl IntoIterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}

fn oids(v: impl IntoIterator<Item = i64>) -> ArrayRef {
    Arc::new(Int64Array::from_iter_values(v))
}

fn flags(n: usize, value: bool) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; n]))
}

/// The namespaces with their oids, and the tables with theirs, in name order.
async fn listing(
    store: &Store,
) -> DfResult<(Vec<(i64, String)>, Vec<(i64, i64, TableDefinition)>)> {
    let mut namespaces: Vec<String> = store
        .namespaces_created()
        .await
        .map_err(external)?
        .into_iter()
        .map(|(ns, _)| ns.to_string())
        .collect();
    namespaces.sort();
    let mut tables = store.tables(None).await.map_err(external)?;
    tables.sort_by_key(|t| t.id.to_string());
    let ns_oid = |name: &str| {
        namespaces
            .iter()
            .position(|n| n == name)
            .map_or(0, |i| FIRST_OID + i as i64)
    };
    let first_table = FIRST_OID + namespaces.len() as i64;
    let tables = tables
        .into_iter()
        .enumerate()
        .map(|(i, def)| {
            (
                first_table + i as i64,
                ns_oid(def.id.namespace.as_str()),
                def,
            )
        })
        .collect();
    let namespaces = namespaces
        .into_iter()
        .enumerate()
        .map(|(i, n)| (FIRST_OID + i as i64, n))
        .collect();
    Ok((namespaces, tables))
}

/// The oid of a table's primary-key index: past every table's.
const INDEX_OID_OFFSET: i64 = 1 << 30;

async fn build(table: Table, store: &Store) -> DfResult<RecordBatch> {
    let schema = table.schema();
    let columns: Vec<ArrayRef> = match table {
        Table::Namespace => {
            let (ns, _) = listing(store).await?;
            vec![
                oids(ns.iter().map(|(o, _)| *o)),
                texts(ns.iter().map(|(_, n)| n.as_str())),
                oids(ns.iter().map(|_| 10)),
            ]
        }
        Table::Class => {
            let (_, tables) = listing(store).await?;
            // The tables, then each one's primary-key index.
            let mut rows: Vec<(i64, String, i64, &str, bool)> = Vec::new();
            for (oid, ns, def) in &tables {
                rows.push((*oid, def.id.table.to_string(), *ns, "r", true));
            }
            for (oid, ns, def) in &tables {
                rows.push((
                    oid + INDEX_OID_OFFSET,
                    format!("{}_pkey", def.id.table),
                    *ns,
                    "i",
                    false,
                ));
            }
            let n = rows.len();
            vec![
                oids(rows.iter().map(|r| r.0)),
                texts(rows.iter().map(|r| r.1.as_str())),
                oids(rows.iter().map(|r| r.2)),
                texts(rows.iter().map(|r| r.3)),
                oids(rows.iter().map(|_| 10)),
                oids(rows.iter().map(|r| if r.3 == "r" { 2 } else { 403 })),
                Arc::new(arrow::array::Float32Array::from(vec![-1.0; n])),
                Arc::new(Int16Array::from(vec![0; n])),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.4)))),
                flags(n, false),
                flags(n, false),
                flags(n, false),
                flags(n, false),
                flags(n, false),
                oids(rows.iter().map(|_| 0)),
                oids(rows.iter().map(|_| 0)),
                texts(rows.iter().map(|_| "p")),
                texts(rows.iter().map(|_| "d")),
                oids(rows.iter().map(|_| 0)),
                Arc::new(StringArray::from(vec![None::<&str>; n])),
            ]
        }
        Table::Attribute => {
            let (_, tables) = listing(store).await?;
            let mut rows = Vec::new();
            for (oid, _, def) in &tables {
                for (i, c) in def.columns().iter().enumerate() {
                    let (typ, typmod) = pg_type(c.data_type);
                    rows.push((
                        *oid,
                        c.name.clone(),
                        typ,
                        typmod,
                        i as i16 + 1,
                        !c.nullable || c.primary_key,
                        c.default.is_some(),
                    ));
                }
                // The key index's columns.
                for (i, c) in def.columns().iter().filter(|c| c.primary_key).enumerate() {
                    let (typ, typmod) = pg_type(c.data_type);
                    rows.push((
                        oid + INDEX_OID_OFFSET,
                        c.name.clone(),
                        typ,
                        typmod,
                        i as i16 + 1,
                        true,
                        false,
                    ));
                }
            }
            let n = rows.len();
            vec![
                oids(rows.iter().map(|r| r.0)),
                texts(rows.iter().map(|r| r.1.as_str())),
                oids(rows.iter().map(|r| r.2)),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
                Arc::new(Int16Array::from_iter_values(rows.iter().map(|r| r.4))),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.5)))),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.6)))),
                flags(n, false),
                oids(rows.iter().map(|_| 0)),
                texts(rows.iter().map(|_| "")),
                texts(rows.iter().map(|_| "")),
                Arc::new(Int32Array::from(vec![-1; n])),
                texts(rows.iter().map(|_| "p")),
            ]
        }
        Table::Type => vec![
            oids(TYPES.iter().map(|t| t.0)),
            texts(TYPES.iter().map(|t| t.1)),
            oids(TYPES.iter().map(|_| 11)),
            oids(TYPES.iter().map(|t| if t.0 == 25 { 100 } else { 0 })),
            texts(TYPES.iter().map(|_| "b")),
        ],
        Table::Am => vec![oids([2, 403]), texts(["heap", "btree"])],
        Table::Attrdef => {
            let (_, tables) = listing(store).await?;
            let mut rows = Vec::new();
            for (oid, _, def) in &tables {
                for (i, c) in def.columns().iter().enumerate() {
                    if let Some(d) = &c.default {
                        rows.push((
                            *oid,
                            i as i16 + 1,
                            crate::system::value_text(d, c.data_type),
                        ));
                    }
                }
            }
            vec![
                oids(rows.iter().enumerate().map(|(i, _)| i as i64 + 1)),
                oids(rows.iter().map(|r| r.0)),
                Arc::new(Int16Array::from_iter_values(rows.iter().map(|r| r.1))),
                texts(rows.iter().map(|r| r.2.as_str())),
            ]
        }
        Table::Index => {
            let (_, tables) = listing(store).await?;
            let n = tables.len();
            let keys: Vec<String> = tables
                .iter()
                .map(|(_, _, def)| {
                    def.columns()
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| c.primary_key)
                        .map(|(i, _)| (i + 1).to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            let definitions: Vec<String> = tables
                .iter()
                .map(|(_, _, def)| {
                    let key: Vec<&str> = def
                        .columns()
                        .iter()
                        .filter(|c| c.primary_key)
                        .map(|c| c.name.as_str())
                        .collect();
                    format!(
                        "CREATE UNIQUE INDEX {}_pkey ON {} USING btree ({})",
                        def.id.table,
                        def.id,
                        key.join(", ")
                    )
                })
                .collect();
            vec![
                oids(tables.iter().map(|t| t.0 + INDEX_OID_OFFSET)),
                oids(tables.iter().map(|t| t.0)),
                flags(n, true),
                flags(n, true),
                flags(n, false),
                flags(n, true),
                texts(keys.iter().map(String::as_str)),
                flags(n, false),
                texts(definitions.iter().map(String::as_str)),
            ]
        }
        Table::Empty(_) => schema
            .fields()
            .iter()
            .map(|f| arrow::array::new_empty_array(f.data_type()))
            .collect(),
    };
    Ok(RecordBatch::try_new(schema, columns)?)
}
