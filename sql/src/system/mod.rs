//! `system.*` and `information_schema.*`: the store's models (storages, namespaces, tables,
//! columns, jobs, per-scope stats, the manifest, live queries, consumers, logins, server sessions) as tables with every model field (secrets
//! aside), built when a query reads them, so they filter, join and aggregate like any table.
//! A session of one user sees only its own and shared scopes in `stats`, `manifest` and
//! `jobs`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::common::Result as DfResult;
use datafusion::datasource::TableType;
use futures::future::BoxFuture;
use kalamstore_storage::codec::array_from_values;
use kalamstore_storage::{
    ColumnDefinition, KalamDataType as T, KalamValue as V, Result as StoreResult, Store, UserId,
};

use crate::error::external;
use crate::leaf::{BatchSource, BatchTable, ProjectedSource};
use crate::principal::Principal;

mod columns;

use columns::{
    CACHES, COLUMNS, CONSUMERS, Column, ColumnRow, FileRow, JOBS, LIVE_QUERIES, MANIFEST,
    NAMESPACES, NamespaceRow, SESSIONS, STATS, STORAGES, StatsRow, TABLES, USERS,
};

/// The schema of the store's models.
pub(crate) const SYSTEM: &str = "system";
/// The standard schema of table and column listings.
pub(crate) const INFORMATION_SCHEMA: &str = "information_schema";

/// The tables of `system` and of `information_schema`.
const SYSTEM_TABLES: &[&str] = &[
    "storages",
    "namespaces",
    "tables",
    "columns",
    "jobs",
    "stats",
    "manifest",
    "caches",
    "live_queries",
    "consumers",
    "users",
    "sessions",
];
const INFORMATION_TABLES: &[&str] = &["tables", "columns"];

/// `system` or `information_schema`.
#[derive(Debug)]
pub(crate) struct SystemSchema {
    schema: &'static str,
    store: Store,
    principal: Principal,
}

impl SystemSchema {
    pub(crate) fn new(name: &str, store: Store, principal: Principal) -> Self {
        Self {
            schema: if name == SYSTEM {
                SYSTEM
            } else {
                INFORMATION_SCHEMA
            },
            store,
            principal,
        }
    }

    fn tables(&self) -> &'static [&'static str] {
        if self.schema == SYSTEM {
            SYSTEM_TABLES
        } else {
            INFORMATION_TABLES
        }
    }
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables().iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let Some(view) = View::named(self.schema, name) else {
            return Ok(None);
        };
        let rows = SystemRows {
            view,
            projection: None,
            store: self.store.clone(),
            principal: self.principal.clone(),
        };
        Ok(Some(Arc::new(BatchTable::new(
            view.schema(),
            TableType::View,
            rows,
        ))))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables().contains(&name)
    }
}

/// One system table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    Storages,
    Namespaces,
    Tables,
    InformationTables,
    Columns,
    Jobs,
    Stats,
    Manifest,
    Caches,
    LiveQueries,
    Consumers,
    Users,
    Sessions,
}

/// A column of a system table: its name and type.
type Col = (&'static str, T);

impl View {
    fn named(schema: &str, name: &str) -> Option<Self> {
        Some(match (schema, name) {
            (SYSTEM, "storages") => Self::Storages,
            (SYSTEM, "namespaces") => Self::Namespaces,
            (SYSTEM, "tables") => Self::Tables,
            (INFORMATION_SCHEMA, "tables") => Self::InformationTables,
            (_, "columns") => Self::Columns,
            (SYSTEM, "jobs") => Self::Jobs,
            (SYSTEM, "stats") => Self::Stats,
            (SYSTEM, "manifest") => Self::Manifest,
            (SYSTEM, "caches") => Self::Caches,
            (SYSTEM, "live_queries") => Self::LiveQueries,
            (SYSTEM, "consumers") => Self::Consumers,
            (SYSTEM, "users") => Self::Users,
            (SYSTEM, "sessions") => Self::Sessions,
            _ => return None,
        })
    }

    fn columns(self) -> Vec<Col> {
        match self {
            Self::Storages => names(STORAGES),
            Self::Namespaces => names(NAMESPACES),
            Self::Tables | Self::InformationTables => names(TABLES),
            Self::Columns => names(COLUMNS),
            Self::Jobs => names(JOBS),
            Self::Stats => names(STATS),
            Self::Manifest => names(MANIFEST),
            Self::Caches => names(CACHES),
            Self::LiveQueries => names(LIVE_QUERIES),
            Self::Consumers => names(CONSUMERS),
            Self::Users => names(USERS),
            Self::Sessions => names(SESSIONS),
        }
    }

    fn definitions(self) -> Vec<ColumnDefinition> {
        self.columns()
            .iter()
            .enumerate()
            .map(|(i, (name, t))| {
                let mut c = ColumnDefinition::new(*name, *t);
                c.ordinal = i as u32;
                c
            })
            .collect()
    }

    fn schema(self) -> SchemaRef {
        let fields: Vec<_> = self
            .definitions()
            .iter()
            .map(ColumnDefinition::arrow_field)
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The table as one batch, read from the store now: the rows `principal` may see, built
    /// column by column.
    async fn batch(self, store: &Store, principal: &Principal) -> StoreResult<RecordBatch> {
        let sees = |user: Option<&str>| match (principal, user) {
            (Principal::User(me), Some(u)) => me.as_str() == u,
            _ => true,
        };
        let arrays = match self {
            Self::Storages => arrays(STORAGES, &store.storages().await?)?,
            Self::Namespaces => {
                let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
                for (ns, created) in store.namespaces_created().await? {
                    counts.insert(ns.to_string(), (0, created));
                }
                for t in store.tables(None).await? {
                    counts.entry(t.id.namespace.to_string()).or_default().0 += 1;
                }
                let rows: Vec<NamespaceRow> = counts
                    .into_iter()
                    .map(|(name, (tables, created_ms))| NamespaceRow {
                        name,
                        tables,
                        created_ms,
                    })
                    .collect();
                arrays(NAMESPACES, &rows)?
            }
            Self::Tables | Self::InformationTables => arrays(TABLES, &store.tables(None).await?)?,
            Self::Columns => {
                let mut rows = Vec::new();
                for d in store.tables(None).await? {
                    rows.extend(d.columns().iter().map(|c| ColumnRow {
                        table: d.id.clone(),
                        column: c.clone(),
                    }));
                }
                arrays(COLUMNS, &rows)?
            }
            Self::Jobs => {
                let mut jobs = store.jobs().await?;
                jobs.retain(|j| sees(j.user.as_ref().map(UserId::as_str)));
                arrays(JOBS, &jobs)?
            }
            Self::Stats => {
                let mut rows = Vec::new();
                for d in store.tables(None).await? {
                    for stats in store.table_stats(&d.id).await? {
                        if sees(stats.user.as_deref()) {
                            rows.push(StatsRow {
                                table: d.id.clone(),
                                stats,
                            });
                        }
                    }
                }
                arrays(STATS, &rows)?
            }
            Self::Manifest => {
                let mut rows = Vec::new();
                for d in store.tables(None).await? {
                    for (user, file) in store.manifest(&d.id).await? {
                        if sees(user.as_deref()) {
                            rows.push(FileRow {
                                table: d.id.clone(),
                                user,
                                file,
                            });
                        }
                    }
                }
                arrays(MANIFEST, &rows)?
            }
            Self::Caches => arrays(CACHES, &store.cache_stats().await?)?,
            Self::LiveQueries => {
                let mut queries = store.live_queries();
                queries.retain(|q| own(principal, &q.principal));
                arrays(LIVE_QUERIES, &queries)?
            }
            Self::Consumers => {
                let mut consumers = store.consumers().await?;
                consumers.retain(|c| match principal {
                    Principal::User(me) => c.user.as_ref() == Some(me),
                    _ => true,
                });
                arrays(CONSUMERS, &consumers)?
            }
            Self::Users => {
                let mut users = store.users().await?;
                users.retain(|u| own(principal, &u.name));
                arrays(USERS, &users)?
            }
            Self::Sessions => {
                let mut sessions = store.sessions();
                sessions.retain(|s| own(principal, &s.user));
                arrays(SESSIONS, &sessions)?
            }
        };
        RecordBatch::try_new(self.schema(), arrays)
            .map_err(kalamstore_storage::Error::arrow("building a system table"))
    }
}

/// Whether `principal` sees a row that belongs to the login `name` (a user sees its own).
fn own(principal: &Principal, name: &str) -> bool {
    match principal {
        Principal::User(me) => me.as_str() == name,
        _ => true,
    }
}

fn names<R>(columns: &[Column<R>]) -> Vec<Col> {
    columns.iter().map(|c| (c.name, c.data_type)).collect()
}

/// The arrays of `columns` over `rows`.
fn arrays<R>(columns: &[Column<R>], rows: &[R]) -> StoreResult<Vec<ArrayRef>> {
    columns
        .iter()
        .map(|c| {
            let values: Vec<V> = rows.iter().map(c.value).collect();
            array_from_values(c.name, c.data_type, &values)
        })
        .collect()
}

/// A value as text, as arrow displays it.
pub fn value_text(value: &V, data_type: T) -> String {
    if value.is_null() {
        return "NULL".into();
    }
    let Ok(array) = array_from_values("value", data_type, std::slice::from_ref(value)) else {
        return format!("{value:?}");
    };
    match ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default()) {
        Ok(f) => f.value(0).to_string(),
        Err(_) => format!("{value:?}"),
    }
}

/// Builds a system table's batch when executed: the source of its plan, shown by EXPLAIN as
/// `SystemExec`.
#[derive(Debug, Clone)]
struct SystemRows {
    view: View,
    projection: Option<Vec<usize>>,
    store: Store,
    principal: Principal,
}

impl ProjectedSource for SystemRows {
    fn projected(&self, projection: Option<Vec<usize>>) -> Self {
        Self {
            projection,
            ..self.clone()
        }
    }
}

impl BatchSource for SystemRows {
    const NAME: &'static str = "SystemExec";

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.view)
    }

    fn batch(self) -> BoxFuture<'static, DfResult<RecordBatch>> {
        Box::pin(async move {
            let batch = self
                .view
                .batch(&self.store, &self.principal)
                .await
                .map_err(external)?;
            match self.projection {
                Some(p) => Ok(batch.project(&p)?),
                None => Ok(batch),
            }
        })
    }
}
