//! `system.*` and `information_schema.*`: the store's models (storages, namespaces, tables,
//! columns, jobs, per-scope stats, the manifest, live queries, consumers, logins, server sessions) as tables with every model field (secrets
//! aside), built when a query reads them, so they filter, join and aggregate like any table.
//! A session of one user sees only its own and shared scopes in `stats`, `manifest` and
//! `jobs`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

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
    ColumnDefinition, KalamDataType as T, KalamValue as V, Result as StoreResult, Store,
    TableDefinition, UserId,
};

use crate::error::external;
use crate::leaf::{BatchSource, BatchTable, ProjectedSource};
use crate::principal::Principal;

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

/// A column of a system table.
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

    fn columns(self) -> &'static [Col] {
        match self {
            Self::Storages => &[
                ("storage_id", T::Text),
                ("engine", T::Text),
                ("hot", T::Text),
                ("cold", T::Text),
                ("cache", T::Text),
                ("cache_memory_bytes", T::BigInt),
                ("cache_disk_bytes", T::BigInt),
                ("cache_dir", T::Text),
                ("s3_endpoint", T::Text),
                ("s3_region", T::Text),
                ("s3_allow_http", T::Boolean),
                ("created_at", T::Timestamp),
            ],
            Self::Namespaces => &[
                ("namespace", T::Text),
                ("tables", T::BigInt),
                ("created_at", T::Timestamp),
            ],
            Self::Tables | Self::InformationTables => &[
                ("namespace", T::Text),
                ("table_name", T::Text),
                ("table_type", T::Text),
                ("storage_id", T::Text),
                ("flush_policy", T::Text),
                ("ttl_seconds", T::BigInt),
                ("schema_version", T::BigInt),
                ("access_level", T::Text),
                ("comment", T::Text),
                ("delta", T::Text),
                ("columns", T::BigInt),
                ("created_at", T::Timestamp),
                ("altered_at", T::Timestamp),
                ("change_retention", T::Text),
            ],
            Self::Columns => &[
                ("namespace", T::Text),
                ("table_name", T::Text),
                ("column_name", T::Text),
                ("ordinal", T::BigInt),
                ("data_type", T::Text),
                ("is_nullable", T::Boolean),
                ("primary_key", T::Boolean),
                ("column_default", T::Text),
                ("column_id", T::BigInt),
                ("comment", T::Text),
            ],
            Self::Jobs => &[
                ("job_id", T::Text),
                ("kind", T::Text),
                ("table_name", T::Text),
                ("user_id", T::Text),
                ("status", T::Text),
                ("created_at", T::Timestamp),
                ("started_at", T::Timestamp),
                ("ended_at", T::Timestamp),
                ("rows", T::BigInt),
                ("bytes", T::BigInt),
                ("files", T::BigInt),
                ("error", T::Text),
                ("summary", T::Text),
                ("attempts", T::BigInt),
            ],
            Self::Stats => &[
                ("namespace", T::Text),
                ("table_name", T::Text),
                ("user_id", T::Text),
                ("hot_rows", T::BigInt),
                ("files", T::BigInt),
                ("file_rows", T::BigInt),
                ("deleted_rows", T::BigInt),
                ("bytes", T::BigInt),
                ("deleted_ratio", T::Double),
            ],
            Self::Manifest => &[
                ("namespace", T::Text),
                ("table_name", T::Text),
                ("user_id", T::Text),
                ("file_id", T::BigInt),
                ("path", T::Text),
                ("rows", T::BigInt),
                ("deleted_rows", T::BigInt),
                ("bytes", T::BigInt),
                ("min_seq", T::BigInt),
                ("max_seq", T::BigInt),
                ("schema_version", T::BigInt),
                ("created_at", T::Timestamp),
            ],
            Self::Caches => &[
                ("storage_id", T::Text),
                ("tier", T::Text),
                ("hits", T::BigInt),
                ("misses", T::BigInt),
                ("hit_ratio", T::Double),
                ("hit_bytes", T::BigInt),
                ("miss_bytes", T::BigInt),
                ("memory_bytes", T::BigInt),
                ("disk_bytes", T::BigInt),
                ("used_bytes", T::BigInt),
                ("warm_start", T::Boolean),
            ],
            Self::LiveQueries => &[
                ("live_id", T::Text),
                ("principal", T::Text),
                ("table_name", T::Text),
                ("scope", T::Text),
                ("filter", T::Text),
                ("state", T::Text),
                ("cursor", T::BigInt),
                ("lag", T::BigInt),
                ("delivered", T::BigInt),
                ("queue_depth", T::BigInt),
                ("started_at", T::Timestamp),
            ],
            Self::Consumers => &[
                ("name", T::Text),
                ("table_name", T::Text),
                ("scope", T::Text),
                ("acked", T::BigInt),
                ("acked_at", T::Timestamp),
                ("created_at", T::Timestamp),
            ],
            // The verifier is a secret: never listed.
            Self::Users => &[
                ("name", T::Text),
                ("role", T::Text),
                ("created_at", T::Timestamp),
                ("updated_at", T::Timestamp),
            ],
            Self::Sessions => &[
                ("session_id", T::BigInt),
                ("user_name", T::Text),
                ("role", T::Text),
                ("client", T::Text),
                ("application_name", T::Text),
                ("connected_at", T::Timestamp),
                ("statement", T::Text),
                ("statement_started_at", T::Timestamp),
            ],
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

    /// The rows, read from the store now.
    async fn rows(self, store: &Store, principal: &Principal) -> StoreResult<Vec<Vec<V>>> {
        let sees = |user: Option<&UserId>| match (principal, user) {
            (Principal::User(me), Some(u)) => me == u,
            _ => true,
        };
        Ok(match self {
            Self::Storages => store.storages().await?.iter().map(storage_row).collect(),
            Self::Namespaces => {
                let mut counts: BTreeMap<String, (i64, i64)> = BTreeMap::new();
                for (ns, created) in store.namespaces_created().await? {
                    counts.insert(ns.to_string(), (0, created));
                }
                for t in store.tables(None).await? {
                    counts.entry(t.id.namespace.to_string()).or_default().0 += 1;
                }
                counts
                    .into_iter()
                    .map(|(ns, (n, created))| vec![V::Text(ns), V::BigInt(n), at(Some(created))])
                    .collect()
            }
            Self::Tables | Self::InformationTables => {
                store.tables(None).await?.iter().map(table_row).collect()
            }
            Self::Columns => store
                .tables(None)
                .await?
                .iter()
                .flat_map(|d| d.columns().iter().map(move |c| column_row(d, c)))
                .collect(),
            Self::Jobs => store
                .jobs()
                .await?
                .into_iter()
                .filter(|j| sees(j.user.as_ref()))
                .map(|j| {
                    vec![
                        V::Text(j.id),
                        V::Text(j.kind.to_string()),
                        text(j.table.map(|t| t.to_string())),
                        text(j.user.map(|u| u.to_string())),
                        V::Text(j.status.to_string()),
                        at(Some(j.created_at_ms)),
                        at(j.started_at_ms),
                        at(j.ended_at_ms),
                        big(j.rows),
                        big(j.bytes),
                        big(j.files),
                        text(j.error),
                        text(j.summary),
                        big(u64::from(j.attempts)),
                    ]
                })
                .collect(),
            Self::Stats => {
                let mut rows = Vec::new();
                for def in store.tables(None).await? {
                    for s in store.table_stats(&def.id).await? {
                        let user = s.user.as_deref().and_then(|u| UserId::new(u).ok());
                        if !sees(user.as_ref()) {
                            continue;
                        }
                        rows.push(vec![
                            V::Text(def.id.namespace.to_string()),
                            V::Text(def.id.table.to_string()),
                            text(s.user.clone()),
                            big(s.hot_rows),
                            big(s.files),
                            big(s.file_rows),
                            big(s.deleted_rows),
                            big(s.bytes),
                            V::Double(s.deleted_ratio()),
                        ]);
                    }
                }
                rows
            }
            Self::Manifest => {
                let mut rows = Vec::new();
                for def in store.tables(None).await? {
                    for (user, f) in store.manifest(&def.id).await? {
                        let id = user.as_deref().and_then(|u| UserId::new(u).ok());
                        if !sees(id.as_ref()) {
                            continue;
                        }
                        rows.push(vec![
                            V::Text(def.id.namespace.to_string()),
                            V::Text(def.id.table.to_string()),
                            text(user),
                            V::BigInt(f.meta.id),
                            V::Text(f.meta.path.clone()),
                            big(f.meta.rows),
                            big(f.dv.len()),
                            big(f.meta.size),
                            V::BigInt(f.meta.min_seq),
                            V::BigInt(f.meta.max_seq),
                            V::BigInt(i64::from(f.meta.schema_version)),
                            at(Some(f.meta.created_at_ms)),
                        ]);
                    }
                }
                rows
            }
            Self::Caches => store
                .cache_stats()
                .await?
                .into_iter()
                .map(|c| {
                    let s = c.stats;
                    let lookups = s.hits + s.misses;
                    vec![
                        V::Text(c.storage.to_string()),
                        V::Text(c.tier.to_string()),
                        big(s.hits),
                        big(s.misses),
                        if lookups == 0 {
                            V::Null
                        } else {
                            V::Double(s.hits as f64 / lookups as f64)
                        },
                        big(s.hit_bytes),
                        big(s.miss_bytes),
                        big(c.spec.memory_bytes),
                        big(c.spec.disk_bytes),
                        c.used_bytes.map_or(V::Null, big),
                        V::Boolean(s.warm_start),
                    ]
                })
                .collect(),
            Self::LiveQueries => store
                .live_queries()
                .into_iter()
                .filter(|q| match principal {
                    Principal::User(me) => q.principal == me.as_str(),
                    _ => true,
                })
                .map(|q| {
                    vec![
                        V::Text(q.id),
                        V::Text(q.principal),
                        V::Text(q.table),
                        V::Text(q.scope),
                        V::Text(q.filter),
                        V::Text(q.state.to_owned()),
                        V::BigInt(q.cursor),
                        V::BigInt(q.lag),
                        big(q.delivered),
                        // A subscription is a cursor: nothing waits in a queue for it.
                        V::BigInt(0),
                        at(Some(q.started_at_ms)),
                    ]
                })
                .collect(),
            Self::Consumers => store
                .consumers()
                .await?
                .into_iter()
                .filter(|c| match principal {
                    Principal::User(me) => c.user.as_ref() == Some(me),
                    _ => true,
                })
                .map(|c| {
                    vec![
                        V::Text(c.name),
                        V::Text(c.table.to_string()),
                        V::Text(match (&c.user, c.all_users) {
                            (_, true) => "*".into(),
                            (Some(u), false) => u.to_string(),
                            (None, false) => String::new(),
                        }),
                        V::BigInt(c.acked),
                        at(Some(c.acked_at_ms)),
                        at(Some(c.created_at_ms)),
                    ]
                })
                .collect(),
            Self::Sessions => store
                .sessions()
                .into_iter()
                .filter(|s| match principal {
                    Principal::User(me) => s.user == me.as_str(),
                    _ => true,
                })
                .map(|s| {
                    vec![
                        V::BigInt(s.id),
                        V::Text(s.user),
                        V::Text(s.role),
                        V::Text(s.client),
                        V::Text(s.application),
                        at(Some(s.connected_at_ms)),
                        s.statement.map_or(V::Null, V::Text),
                        at(s.statement_started_at_ms),
                    ]
                })
                .collect(),
            Self::Users => store
                .users()
                .await?
                .into_iter()
                .filter(|u| match principal {
                    Principal::User(me) => u.name == me.as_str(),
                    _ => true,
                })
                .map(|u| {
                    vec![
                        V::Text(u.name),
                        V::Text(u.role.as_str().to_owned()),
                        at(Some(u.created_at_ms)),
                        at(Some(u.updated_at_ms)),
                    ]
                })
                .collect(),
        })
    }

    /// The table as one batch.
    async fn batch(self, store: &Store, principal: &Principal) -> StoreResult<RecordBatch> {
        let rows = self.rows(store, principal).await?;
        let arrays = self
            .columns()
            .iter()
            .enumerate()
            .map(|(i, (name, t))| {
                let values: Vec<V> = rows.iter().map(|r| r[i].clone()).collect();
                array_from_values(name, *t, &values)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        RecordBatch::try_new(self.schema(), arrays)
            .map_err(kalamstore_storage::Error::arrow("building a system table"))
    }
}

fn text(s: Option<String>) -> V {
    s.map_or(V::Null, V::Text)
}

fn big(n: u64) -> V {
    V::BigInt(i64::try_from(n).unwrap_or(i64::MAX))
}

fn at(ms: Option<i64>) -> V {
    ms.map_or(V::Null, |m| V::Timestamp(m.saturating_mul(1000)))
}

fn storage_row(s: &kalamstore_storage::StorageDefinition) -> Vec<V> {
    let cache = s.cache.as_ref();
    vec![
        V::Text(s.id.to_string()),
        V::Text(s.hot.kind().into()),
        V::Text(s.hot.location().into()),
        V::Text(s.cold_url.clone()),
        text(cache.map(|c| format!("memory {} B, disk {} B", c.memory_bytes, c.disk_bytes))),
        cache.map_or(V::Null, |c| big(c.memory_bytes)),
        cache.map_or(V::Null, |c| big(c.disk_bytes)),
        text(cache.map(|c| c.disk_path.clone())),
        text(s.s3.endpoint.clone()),
        text(s.s3.region.clone()),
        V::Boolean(s.s3.allow_http),
        at(Some(s.created_at_ms)),
    ]
}

fn table_row(d: &TableDefinition) -> Vec<V> {
    let created = d
        .history
        .first()
        .map_or(d.schema.created_at_ms, |v| v.created_at_ms);
    vec![
        V::Text(d.id.namespace.to_string()),
        V::Text(d.id.table.to_string()),
        V::Text(d.table_type.to_string()),
        V::Text(d.storage_id.to_string()),
        V::Text(d.options.flush_policy.to_string()),
        d.options
            .ttl_seconds
            .map_or(V::Null, |s| V::BigInt(i64::try_from(s).unwrap_or(i64::MAX))),
        V::BigInt(i64::from(d.schema.version)),
        V::Text(d.options.access_level.to_string()),
        text(d.options.comment.clone()),
        V::Text(d.options.delta.to_string()),
        V::BigInt(d.columns().len() as i64),
        at(Some(created)),
        at(Some(d.schema.created_at_ms)),
        V::Text(d.options.change_retention.to_string()),
    ]
}

fn column_row(d: &TableDefinition, c: &ColumnDefinition) -> Vec<V> {
    vec![
        V::Text(d.id.namespace.to_string()),
        V::Text(d.id.table.to_string()),
        V::Text(c.name.clone()),
        V::BigInt(i64::from(c.ordinal)),
        V::Text(c.data_type.to_string()),
        V::Boolean(c.nullable),
        V::Boolean(c.primary_key),
        text(c.default.as_ref().map(|v| value_text(v, c.data_type))),
        V::BigInt(i64::from(c.id)),
        text(c.comment.clone()),
    ]
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
