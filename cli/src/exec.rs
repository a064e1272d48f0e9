//! Runs [`Command`]s against a [`Store`]: DDL, writes, merge-on-read queries with pushed-down
//! predicates, maintenance jobs, system views and exports.

use std::io::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, filter_record_batch, lexsort_to_indices,
    take_record_batch,
};
use kalamstore::codec::array_from_values;
use kalamstore::codec::row_values;
use kalamstore::{
    AccessLevel, CacheSpec, ColumnDefinition, CompactionPolicy, Filter, FlushPolicy, HotEngine,
    JobRecord, KalamDataType, KalamValue, Mutation, NamespaceId, OptionsChange, S3Options,
    ScanOptions, SchemaChange, SchemaVersion, Scope, StorageDefinition, StorageId, Store,
    TableDefinition, TableId, TableOptions, TableType, UserId,
};

use crate::error::{CliError, invalid};
use crate::parse::{AlterAction, ColumnSpec, Command, Literal, Pred, Projection};
use crate::value::to_value;

/// Rows and their column names and types.
#[derive(Debug, Clone, Default)]
pub struct ResultSet {
    /// Column names and types.
    pub columns: Vec<(String, KalamDataType)>,
    /// Rows, values in column order.
    pub rows: Vec<Vec<KalamValue>>,
}

/// What a statement produced: rows to print and/or a summary line for stderr.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Query results.
    pub rows: Option<ResultSet>,
    /// e.g. `INSERT 3`.
    pub summary: String,
}

impl Outcome {
    fn summary(s: impl Into<String>) -> Self {
        Self {
            rows: None,
            summary: s.into(),
        }
    }
}

/// A connection to the store: whose rows USER tables show and the `$n` parameters.
pub struct Session {
    /// The store.
    pub store: Store,
    /// Default user (`--user`).
    pub user: Option<UserId>,
    /// `--param` values.
    pub params: Vec<String>,
    /// Show progress bars (stderr is a terminal).
    pub progress: bool,
}

fn table_id(s: &str) -> Result<TableId, CliError> {
    Ok(s.parse::<TableId>()?)
}

fn parse_size(s: &str) -> Result<u64, CliError> {
    let t = s.trim().to_ascii_uppercase();
    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = t[digits.len()..].trim();
    let n: u64 = digits
        .parse()
        .map_err(|_| invalid(format!("`{s}` is not a size like '64MB'")))?;
    let mult = match unit {
        "" | "B" => 1,
        "KB" | "K" | "KIB" => 1 << 10,
        "MB" | "M" | "MIB" => 1 << 20,
        "GB" | "G" | "GIB" => 1 << 30,
        _ => {
            return Err(invalid(format!(
                "`{s}` has an unknown unit (B, KB, MB, GB)"
            )));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| invalid(format!("`{s}` is too large")))
}

impl Session {
    fn user_for(&self, override_user: Option<&UserId>) -> Option<UserId> {
        override_user.cloned().or_else(|| self.user.clone())
    }

    /// The user to pass for a table: USER tables get the session's user, other kinds none.
    fn scope_user(
        &self,
        def: &TableDefinition,
        user: Option<&UserId>,
    ) -> Result<Option<UserId>, CliError> {
        match def.table_type {
            TableType::User => self.user_for(user).map(Some).ok_or_else(|| {
                invalid(format!(
                    "table {} is a USER table: give --user <id> or use EXECUTE AS USER '<id>' (...)",
                    def.id
                ))
            }),
            _ => Ok(None),
        }
    }

    fn value(&self, l: &Literal, c: &ColumnDefinition) -> Result<KalamValue, CliError> {
        to_value(l, c.data_type, &c.name, &self.params)
    }

    fn filter(&self, def: &TableDefinition, p: &Pred) -> Result<Filter, CliError> {
        filter_for(&def.schema, p, &self.params)
    }

    /// Runs one statement.
    pub async fn execute(&self, command: Command) -> Result<Outcome, CliError> {
        self.run(command, None).await
    }

    async fn run(&self, command: Command, user: Option<&UserId>) -> Result<Outcome, CliError> {
        let store = &self.store;
        match command {
            Command::ExecuteAs { user: u, inner } => {
                let u = UserId::new(u)?;
                Box::pin(self.run(*inner, Some(&u))).await
            }
            Command::CreateStorage {
                id,
                kind,
                path,
                engine,
                cache,
                config,
            } => {
                let def = self.storage_definition(&id, &kind, path, engine, cache, config)?;
                store.create_storage(def).await?;
                Ok(Outcome::summary(format!("CREATE STORAGE {id}")))
            }
            Command::DropStorage { id, if_exists } => {
                let dropped = store.drop_storage(&StorageId::new(&id)?, if_exists).await?;
                Ok(Outcome::summary(if dropped {
                    format!("DROP STORAGE {id}")
                } else {
                    format!("DROP STORAGE {id}: did not exist")
                }))
            }
            Command::ShowStorages => Ok(rows_outcome(storages_view(store).await?)),
            Command::StorageCheck(id) => {
                store.check_storage(&StorageId::new(&id)?).await?;
                Ok(Outcome::summary(format!(
                    "STORAGE CHECK {id}: write, read, list and delete ok"
                )))
            }
            Command::CreateNamespace {
                name,
                if_not_exists,
            } => {
                let created = store
                    .create_namespace(&NamespaceId::new(&name)?, if_not_exists)
                    .await?;
                Ok(Outcome::summary(if created {
                    format!("CREATE NAMESPACE {name}")
                } else {
                    format!("CREATE NAMESPACE {name}: exists")
                }))
            }
            Command::DropNamespace {
                name,
                if_exists,
                cascade,
            } => {
                let ns = NamespaceId::new(&name)?;
                if if_exists && !store.namespaces().await?.contains(&ns) {
                    return Ok(Outcome::summary(format!(
                        "DROP NAMESPACE {name}: did not exist"
                    )));
                }
                store.drop_namespace(&ns, cascade).await?;
                Ok(Outcome::summary(format!("DROP NAMESPACE {name}")))
            }
            Command::ShowNamespaces => {
                let rows = store
                    .namespaces()
                    .await?
                    .into_iter()
                    .map(|n| vec![KalamValue::Text(n.to_string())])
                    .collect();
                Ok(rows_outcome(ResultSet {
                    columns: vec![("namespace".into(), KalamDataType::Text)],
                    rows,
                }))
            }
            Command::CreateTable {
                kind,
                if_not_exists,
                table,
                columns,
                options,
            } => {
                let def = self.table_definition(&kind, &table, &columns, &options)?;
                let created = store.create_table(def, if_not_exists).await?;
                Ok(Outcome::summary(if created {
                    format!("CREATE {kind} TABLE {table}")
                } else {
                    format!("CREATE TABLE {table}: exists")
                }))
            }
            Command::AlterTable { table, action } => self.alter(&table, action).await,
            Command::DropTable { table, if_exists } => {
                let dropped = store.drop_table(&table_id(&table)?, if_exists).await?;
                Ok(Outcome::summary(if dropped {
                    format!("DROP TABLE {table}")
                } else {
                    format!("DROP TABLE {table}: did not exist")
                }))
            }
            Command::ShowTables(ns) => {
                let ns = ns.map(NamespaceId::new).transpose()?;
                Ok(rows_outcome(tables_view(store, ns.as_ref()).await?))
            }
            Command::Describe(table) => {
                let def = store.table(&table_id(&table)?).await?;
                Ok(rows_outcome(columns_view(&[def.as_ref().clone()])))
            }
            Command::Insert {
                table,
                columns,
                rows,
            } => {
                let id = table_id(&table)?;
                let def = store.table(&id).await?;
                let targets: Vec<&ColumnDefinition> = match &columns {
                    None => def.columns().iter().collect(),
                    Some(names) => names
                        .iter()
                        .map(|n| {
                            def.schema.column(n).ok_or_else(|| {
                                invalid(format!("table {table} has no column `{n}`"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                };
                let mut mutations = Vec::with_capacity(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    if row.len() != targets.len() {
                        return Err(invalid(format!(
                            "row {} has {} values for {} columns",
                            i + 1,
                            row.len(),
                            targets.len()
                        )));
                    }
                    let named = targets
                        .iter()
                        .zip(row)
                        .map(|(c, l)| Ok((c.name.clone(), self.value(l, c)?)))
                        .collect::<Result<Vec<_>, CliError>>()?;
                    mutations.push(Mutation::Insert(named));
                }
                let u = self.scope_user(&def, user)?;
                let summary = store.write(&id, u.as_ref(), mutations).await?;
                Ok(Outcome::summary(format!("INSERT {}", summary.inserted)))
            }
            Command::Update { table, set, filter } => {
                let id = table_id(&table)?;
                let def = store.table(&id).await?;
                let set =
                    set.iter()
                        .map(|(n, l)| {
                            let c = def.schema.column(n).ok_or_else(|| {
                                invalid(format!("table {table} has no column `{n}`"))
                            })?;
                            Ok((n.clone(), self.value(l, c)?))
                        })
                        .collect::<Result<Vec<_>, CliError>>()?;
                let u = self.scope_user(&def, user)?;
                let keys = self
                    .matching_keys(&def, u.as_ref(), filter.as_ref())
                    .await?;
                let mutations = keys
                    .into_iter()
                    .map(|key| Mutation::Update {
                        key,
                        set: set.clone(),
                    })
                    .collect();
                let summary = store.write(&id, u.as_ref(), mutations).await?;
                Ok(Outcome::summary(format!("UPDATE {}", summary.updated)))
            }
            Command::Delete { table, filter } => {
                let id = table_id(&table)?;
                let def = store.table(&id).await?;
                let u = self.scope_user(&def, user)?;
                let keys = self
                    .matching_keys(&def, u.as_ref(), filter.as_ref())
                    .await?;
                let mutations = keys
                    .into_iter()
                    .map(|key| Mutation::Delete { key })
                    .collect();
                let summary = store.write(&id, u.as_ref(), mutations).await?;
                Ok(Outcome::summary(format!("DELETE {}", summary.deleted)))
            }
            Command::Select {
                projection,
                table,
                filter,
                order_by,
                limit,
                offset,
            } => {
                let rows = self
                    .select(
                        &projection,
                        &table,
                        filter.as_ref(),
                        &order_by,
                        limit,
                        offset,
                        user,
                    )
                    .await?;
                let n = rows.rows.len();
                Ok(Outcome {
                    rows: Some(rows),
                    summary: format!("{n} row{}", if n == 1 { "" } else { "s" }),
                })
            }
            Command::Flush {
                table,
                namespace,
                user: for_user,
            } => {
                let targets: Vec<TableDefinition> = match &table {
                    Some(t) => vec![store.table(&table_id(t)?).await?.as_ref().clone()],
                    None => {
                        let ns = namespace.map(NamespaceId::new).transpose()?;
                        store
                            .tables(ns.as_ref())
                            .await?
                            .into_iter()
                            .filter(|d| d.table_type != TableType::Stream)
                            .collect()
                    }
                };
                let scope = match for_user {
                    Some(u) => Scope::User(UserId::new(u)?),
                    None => Scope::All,
                };
                let mut lines = Vec::new();
                for def in targets {
                    let bar = self.spinner(&format!("flushing {}", def.id));
                    let job = store.flush_table(&def.id, scope.clone()).await;
                    if let Some(b) = bar {
                        b.finish_and_clear();
                    }
                    lines.push(job_line(&format!("FLUSH {}", def.id), &job?));
                }
                if lines.is_empty() {
                    lines.push("FLUSH: no tables".into());
                }
                Ok(Outcome::summary(lines.join("\n")))
            }
            Command::Compact(table) => {
                let id = table_id(&table)?;
                let bar = self.spinner(&format!("compacting {id}"));
                let job = store
                    .compact_table(&id, Scope::All, CompactionPolicy::all())
                    .await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                Ok(Outcome::summary(job_line(&format!("COMPACT {id}"), &job?)))
            }
            Command::ShowManifest(table) => {
                let id = table_id(&table)?;
                let manifest = store.manifest(&id).await?;
                let t = KalamDataType::Text;
                let b = KalamDataType::BigInt;
                let columns = [
                    ("user", t),
                    ("file", t),
                    ("rows", b),
                    ("deleted_rows", b),
                    ("bytes", b),
                    ("min_seq", b),
                    ("max_seq", b),
                    ("schema_version", b),
                ];
                let rows = manifest
                    .into_iter()
                    .map(|(u, f)| {
                        vec![
                            u.map_or(KalamValue::Null, KalamValue::Text),
                            KalamValue::Text(f.meta.path.clone()),
                            KalamValue::BigInt(f.meta.rows as i64),
                            KalamValue::BigInt(f.dv.len() as i64),
                            KalamValue::BigInt(f.meta.size as i64),
                            KalamValue::BigInt(f.meta.min_seq),
                            KalamValue::BigInt(f.meta.max_seq),
                            KalamValue::BigInt(i64::from(f.meta.schema_version)),
                        ]
                    })
                    .collect();
                Ok(rows_outcome(result(&columns, rows)))
            }
            Command::ShowStats(table) => {
                let id = table_id(&table)?;
                let stats = store.table_stats(&id).await?;
                let t = KalamDataType::Text;
                let b = KalamDataType::BigInt;
                let columns = [
                    ("user", t),
                    ("hot_rows", b),
                    ("files", b),
                    ("file_rows", b),
                    ("deleted_rows", b),
                    ("deleted_ratio", KalamDataType::Double),
                    ("bytes", b),
                ];
                let rows = stats
                    .into_iter()
                    .map(|s| {
                        vec![
                            s.user.clone().map_or(KalamValue::Null, KalamValue::Text),
                            KalamValue::BigInt(s.hot_rows as i64),
                            KalamValue::BigInt(s.files as i64),
                            KalamValue::BigInt(s.file_rows as i64),
                            KalamValue::BigInt(s.deleted_rows as i64),
                            KalamValue::Double(s.deleted_ratio()),
                            KalamValue::BigInt(s.bytes as i64),
                        ]
                    })
                    .collect();
                Ok(rows_outcome(result(&columns, rows)))
            }
            Command::KillJob(id) => {
                store.cancel_job(&id).await?;
                Ok(Outcome::summary(format!(
                    "KILL JOB {id}: cancellation requested"
                )))
            }
            Command::Export { user: u, path } => {
                let u = UserId::new(u)?;
                let bar = self.spinner(&format!("exporting {u}"));
                let result =
                    crate::export::export_user(store, &u, std::path::Path::new(&path)).await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let (tables, rows) = result?;
                Ok(Outcome::summary(format!(
                    "EXPORT USER DATA {u}: {tables} table(s), {rows} row(s) to {path}"
                )))
            }
        }
    }

    fn spinner(&self, msg: &str) -> Option<indicatif::ProgressBar> {
        if !self.progress {
            return None;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message(msg.to_owned());
        bar.enable_steady_tick(std::time::Duration::from_millis(100));
        Some(bar)
    }

    fn storage_definition(
        &self,
        id: &str,
        kind: &str,
        path: Option<String>,
        engine: Option<String>,
        cache: Option<(String, Option<String>)>,
        config: Option<String>,
    ) -> Result<StorageDefinition, CliError> {
        let id = StorageId::new(id)?;
        let local_dir = self.store.data_dir().join("storages").join(id.as_str());
        let mut s3 = S3Options::default();
        if let Some(config) = &config {
            let v: serde_json::Value = serde_json::from_str(config)
                .map_err(|e| invalid(format!("CONFIG is not valid JSON: {e}")))?;
            let obj = v
                .as_object()
                .ok_or_else(|| invalid("CONFIG must be a JSON object"))?;
            for (k, v) in obj {
                let text = || {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(format!("CONFIG `{k}` must be a string")))
                };
                match k.as_str() {
                    "endpoint" => s3.endpoint = Some(text()?),
                    "region" => s3.region = Some(text()?),
                    "access_key_id" => s3.access_key_id = Some(text()?),
                    "secret_access_key" => s3.secret_access_key = Some(text()?),
                    "allow_http" => {
                        s3.allow_http = v
                            .as_bool()
                            .ok_or_else(|| invalid("CONFIG `allow_http` must be true or false"))?
                    }
                    other => return Err(invalid(format!("unknown CONFIG key `{other}`"))),
                }
            }
        }
        let (hot, cold_url) = match kind {
            "filesystem" => {
                // Without PATH the storage lives in the data directory.
                let base = path.map_or_else(|| local_dir.clone(), std::path::PathBuf::from);
                let base = base.as_path();
                let hot = match engine.as_deref().unwrap_or("rocksdb") {
                    "rocksdb" => HotEngine::RocksDb {
                        path: base.join("hot").to_string_lossy().into_owned(),
                    },
                    "object_store" => HotEngine::ObjectStore {
                        url: base.join("hot").to_string_lossy().into_owned(),
                    },
                    "memory" => HotEngine::Memory,
                    other => return Err(invalid(format!("unknown ENGINE `{other}`"))),
                };
                (hot, base.join("cold").to_string_lossy().into_owned())
            }
            "s3" => {
                let base =
                    path.ok_or_else(|| invalid("TYPE s3 needs PATH 's3://bucket/prefix'"))?;
                if !base.starts_with("s3://") {
                    return Err(invalid(format!("`{base}` is not an s3:// URL")));
                }
                let base = base.trim_end_matches('/');
                let hot = match engine.as_deref().unwrap_or("object_store") {
                    "object_store" => HotEngine::ObjectStore {
                        url: format!("{base}/hot"),
                    },
                    "rocksdb" => HotEngine::RocksDb {
                        path: local_dir.join("hot").to_string_lossy().into_owned(),
                    },
                    "memory" => HotEngine::Memory,
                    other => return Err(invalid(format!("unknown ENGINE `{other}`"))),
                };
                (hot, format!("{base}/cold"))
            }
            "memory" => (HotEngine::Memory, "memory://".to_owned()),
            other => {
                return Err(invalid(format!(
                    "unknown storage TYPE `{other}` (filesystem, s3, memory)"
                )));
            }
        };
        let cache = cache
            .map(|(memory, disk)| -> Result<CacheSpec, CliError> {
                Ok(CacheSpec {
                    memory_bytes: parse_size(&memory)?,
                    disk_bytes: disk.as_deref().map(parse_size).transpose()?.unwrap_or(0),
                    disk_path: local_dir.join("cache").to_string_lossy().into_owned(),
                })
            })
            .transpose()?;
        Ok(StorageDefinition {
            id,
            hot,
            cold_url,
            s3,
            cache,
            created_at_ms: 0,
        })
    }

    fn table_definition(
        &self,
        kind: &str,
        table: &str,
        columns: &[ColumnSpec],
        options: &[(String, Literal)],
    ) -> Result<TableDefinition, CliError> {
        let id = table_id(table)?;
        let table_type = match kind {
            "USER" => TableType::User,
            "STREAM" => TableType::Stream,
            _ => TableType::Shared,
        };
        let defs = columns
            .iter()
            .map(|c| self.column_definition(c))
            .collect::<Result<Vec<_>, _>>()?;
        let (change, storage) = table_properties(options)?;
        let opts = TableOptions {
            flush_policy: change.flush_policy.unwrap_or_default(),
            ttl_seconds: change.ttl_seconds,
            access_level: change.access_level.unwrap_or_default(),
            comment: change.comment,
        };
        let storage = storage.unwrap_or_else(StorageId::local);
        let now = chrono::Utc::now().timestamp_millis();
        Ok(TableDefinition::new(
            id, table_type, defs, storage, opts, now,
        )?)
    }

    fn column_definition(&self, c: &ColumnSpec) -> Result<ColumnDefinition, CliError> {
        let data_type = kalamstore::types::parse_sql_type(&c.data_type)
            .map_err(|e| invalid(format!("column `{}`: {e}", c.name)))?;
        let mut def = ColumnDefinition::new(c.name.to_ascii_lowercase(), data_type);
        if c.primary_key {
            def = def.primary_key();
        }
        if c.not_null {
            def = def.not_null();
        }
        if let Some(l) = &c.default {
            let v = to_value(l, data_type, &c.name, &self.params)?;
            def = def.with_default(v);
        }
        Ok(def)
    }

    async fn alter(&self, table: &str, action: AlterAction) -> Result<Outcome, CliError> {
        let id = table_id(table)?;
        let store = &self.store;
        let change = match action {
            AlterAction::AddColumn(c) => SchemaChange::AddColumn(self.column_definition(&c)?),
            AlterAction::DropColumn(c) => SchemaChange::DropColumn(c.to_ascii_lowercase()),
            AlterAction::RenameColumn { from, to } => SchemaChange::RenameColumn {
                from: from.to_ascii_lowercase(),
                to: to.to_ascii_lowercase(),
            },
            AlterAction::ModifyColumn { name, data_type } => SchemaChange::ModifyColumn {
                data_type: kalamstore::types::parse_sql_type(&data_type)
                    .map_err(|e| invalid(format!("column `{name}`: {e}")))?,
                name: name.to_ascii_lowercase(),
            },
            AlterAction::SetStorage(storage) => return self.move_to(&id, &storage).await,
            AlterAction::SetProperties(props) => {
                let (change, storage) = table_properties(&props)?;
                let mut lines = Vec::new();
                if change != OptionsChange::default() {
                    let def = store.set_table_options(&id, &change).await?;
                    let o = &def.options;
                    lines.push(format!(
                        "ALTER TABLE {id}: FLUSH_POLICY {}, TTL_SECONDS {}, ACCESS_LEVEL {}",
                        o.flush_policy,
                        o.ttl_seconds.map_or("-".into(), |t| t.to_string()),
                        o.access_level
                    ));
                }
                if let Some(storage) = storage {
                    lines.push(self.move_to(&id, storage.as_str()).await?.summary);
                }
                return Ok(Outcome::summary(lines.join("\n")));
            }
        };
        let def = store.alter_table(&id, &change).await?;
        Ok(Outcome::summary(format!(
            "ALTER TABLE {id}: {change} (schema version {})",
            def.schema.version
        )))
    }

    async fn move_to(&self, id: &TableId, storage: &str) -> Result<Outcome, CliError> {
        let storage = StorageId::new(storage)?;
        let bar = self.spinner(&format!("moving {id} to storage {storage}"));
        let job = self.store.move_table(id, &storage).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        Ok(Outcome::summary(match job? {
            Some(job) => job_line(&format!("MOVE {id} to {storage}"), &job),
            None => format!("MOVE {id}: already on storage {storage}"),
        }))
    }

    async fn matching_keys(
        &self,
        def: &TableDefinition,
        user: Option<&UserId>,
        filter: Option<&Pred>,
    ) -> Result<Vec<Vec<KalamValue>>, CliError> {
        let pk: Vec<String> = def.primary_key().map(|c| c.name.clone()).collect();
        let options = ScanOptions {
            columns: Some(pk),
            filter: filter.map(|p| self.filter(def, p)).transpose()?,
            ..ScanOptions::default()
        };
        let batches = self.store.scan(&def.id, user, &options).await?;
        let mut keys = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                keys.push(row_values(b, i)?);
            }
        }
        Ok(keys)
    }

    #[expect(clippy::too_many_arguments, reason = "the parts of one SELECT")]
    async fn select(
        &self,
        projection: &Projection,
        table: &str,
        filter: Option<&Pred>,
        order_by: &[(String, bool)],
        limit: Option<usize>,
        offset: usize,
        user: Option<&UserId>,
    ) -> Result<ResultSet, CliError> {
        let (batch, schema) = if let Some(view) = self.view(table).await? {
            let schema = view_schema(&view);
            let mut batch = to_batch(&view, &schema)?;
            if let Some(p) = filter {
                let f = filter_for(&schema, p, &self.params)?.bind(&schema, table)?;
                let mask = f.evaluate(&batch)?;
                batch = filter_record_batch(&batch, &mask).map_err(arrow_err)?;
            }
            (batch, schema)
        } else {
            let id = table_id(table)?;
            let def = self.store.table(&id).await?;
            let u = self.scope_user(&def, user)?;
            let mut columns: Vec<String> = match projection {
                Projection::All => def.columns().iter().map(|c| c.name.clone()).collect(),
                Projection::Columns(c) => c.clone(),
                Projection::CountStar => vec![
                    def.primary_key()
                        .next()
                        .map(|c| c.name.clone())
                        .unwrap_or_default(),
                ],
            };
            for (c, _) in order_by {
                if !columns.contains(c) {
                    columns.push(c.clone());
                }
            }
            let options = ScanOptions {
                columns: Some(columns),
                filter: filter.map(|p| self.filter(&def, p)).transpose()?,
                limit: (order_by.is_empty() && !matches!(projection, Projection::CountStar))
                    .then(|| limit.map(|l| l + offset))
                    .flatten(),
                with_system: false,
            };
            let batches = self.store.scan(&id, u.as_ref(), &options).await?;
            let schema = def.schema.clone();
            let arrow_schema =
                kalamstore_schema(&schema, options.columns.as_deref().unwrap_or_default());
            let batch = concat_batches(&arrow_schema, &batches).map_err(arrow_err)?;
            (batch, schema)
        };
        if let Projection::CountStar = projection {
            return Ok(ResultSet {
                columns: vec![("count".into(), KalamDataType::BigInt)],
                rows: vec![vec![KalamValue::BigInt(batch.num_rows() as i64)]],
            });
        }
        let batch = if order_by.is_empty() {
            batch
        } else {
            let sort = order_by
                .iter()
                .map(|(c, asc)| {
                    let values = batch
                        .column_by_name(c)
                        .ok_or_else(|| invalid(format!("ORDER BY: no column `{c}`")))?
                        .clone();
                    Ok(SortColumn {
                        values,
                        options: Some(SortOptions {
                            descending: !asc,
                            nulls_first: !asc,
                        }),
                    })
                })
                .collect::<Result<Vec<_>, CliError>>()?;
            let order = lexsort_to_indices(&sort, None).map_err(arrow_err)?;
            take_record_batch(&batch, &order).map_err(arrow_err)?
        };
        let start = offset.min(batch.num_rows());
        let len = limit.unwrap_or(usize::MAX).min(batch.num_rows() - start);
        let batch = batch.slice(start, len);
        let names: Vec<String> = match projection {
            Projection::All => schema.columns.iter().map(|c| c.name.clone()).collect(),
            Projection::Columns(c) => c.clone(),
            Projection::CountStar => unreachable!("returned above"),
        };
        let mut out = ResultSet::default();
        let mut arrays: Vec<(ArrayRef, KalamDataType)> = Vec::new();
        for n in &names {
            let c = schema
                .column(n)
                .ok_or_else(|| invalid(format!("{table} has no column `{n}`")))?;
            let a = batch
                .column_by_name(n)
                .ok_or_else(|| invalid(format!("{table} has no column `{n}`")))?
                .clone();
            out.columns.push((n.clone(), c.data_type));
            arrays.push((a, c.data_type));
        }
        for i in 0..batch.num_rows() {
            out.rows.push(
                arrays
                    .iter()
                    .map(|(a, t)| kalamstore::codec::value_at(a.as_ref(), *t, i))
                    .collect::<Result<_, _>>()?,
            );
        }
        Ok(out)
    }

    async fn view(&self, table: &str) -> Result<Option<ResultSet>, CliError> {
        let store = &self.store;
        Ok(Some(match table.to_ascii_lowercase().as_str() {
            "information_schema.tables" | "system.tables" => tables_view(store, None).await?,
            "information_schema.columns" => columns_view(&store.tables(None).await?),
            "system.storages" => storages_view(store).await?,
            "system.jobs" => jobs_view(&store.jobs().await?),
            "system.namespaces" | "information_schema.schemata" => ResultSet {
                columns: vec![("namespace".into(), KalamDataType::Text)],
                rows: store
                    .namespaces()
                    .await?
                    .into_iter()
                    .map(|n| vec![KalamValue::Text(n.to_string())])
                    .collect(),
            },
            _ => return Ok(None),
        }))
    }
}

fn arrow_err(e: arrow::error::ArrowError) -> CliError {
    CliError::Store(kalamstore::Error::Arrow {
        op: "evaluating a query",
        source: e,
    })
}

fn kalamstore_schema(schema: &SchemaVersion, names: &[String]) -> arrow::datatypes::SchemaRef {
    Arc::new(arrow::datatypes::Schema::new(
        names
            .iter()
            .filter_map(|n| schema.column(n))
            .map(ColumnDefinition::arrow_field)
            .collect::<Vec<_>>(),
    ))
}

/// A predicate as a store filter, literals typed by their columns.
fn filter_for(schema: &SchemaVersion, p: &Pred, params: &[String]) -> Result<Filter, CliError> {
    let column = |n: &str| {
        schema
            .column(n)
            .ok_or_else(|| invalid(format!("WHERE: no column `{n}`")))
    };
    Ok(match p {
        Pred::Cmp(c, op, l) => {
            let col = column(c)?;
            let v = to_value(l, col.data_type, c, params)?;
            if v.is_null() {
                // `c = NULL` is never true in SQL; say so instead of returning nothing.
                return Err(invalid(format!(
                    "`{c} {op:?} NULL` is never true; use IS NULL / IS NOT NULL"
                )));
            }
            Filter::cmp(c.clone(), *op, v)
        }
        Pred::IsNull(c) => {
            column(c)?;
            Filter::IsNull(c.clone())
        }
        Pred::IsNotNull(c) => {
            column(c)?;
            Filter::IsNotNull(c.clone())
        }
        Pred::In(c, ls, negated) => {
            let col = column(c)?;
            Filter::In {
                column: c.clone(),
                values: ls
                    .iter()
                    .map(|l| to_value(l, col.data_type, c, params))
                    .collect::<Result<_, _>>()?,
                negated: *negated,
            }
        }
        Pred::And(a, b) => Filter::And(vec![
            filter_for(schema, a, params)?,
            filter_for(schema, b, params)?,
        ]),
        Pred::Or(a, b) => Filter::Or(vec![
            filter_for(schema, a, params)?,
            filter_for(schema, b, params)?,
        ]),
        Pred::Not(a) => Filter::Not(Box::new(filter_for(schema, a, params)?)),
    })
}

fn rows_outcome(rows: ResultSet) -> Outcome {
    let n = rows.rows.len();
    Outcome {
        rows: Some(rows),
        summary: format!("{n} row{}", if n == 1 { "" } else { "s" }),
    }
}

fn result(columns: &[(&str, KalamDataType)], rows: Vec<Vec<KalamValue>>) -> ResultSet {
    ResultSet {
        columns: columns.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
        rows,
    }
}

/// Table options of `WITH (...)` / `SET TBLPROPERTIES (...)`, and the storage they name.
fn table_properties(
    options: &[(String, Literal)],
) -> Result<(OptionsChange, Option<StorageId>), CliError> {
    let mut change = OptionsChange::default();
    let mut storage = None;
    for (key, value) in options {
        let text = || match value {
            Literal::String(s) | Literal::Number(s) => Ok(s.clone()),
            _ => Err(invalid(format!("{key} needs a value"))),
        };
        match key.as_str() {
            "STORAGE_ID" | "STORAGE" => storage = Some(StorageId::new(text()?)?),
            "FLUSH_POLICY" => change.flush_policy = Some(text()?.parse::<FlushPolicy>()?),
            "TTL_SECONDS" => {
                let t = text()?;
                change.ttl_seconds = Some(
                    t.parse()
                        .map_err(|_| invalid(format!("TTL_SECONDS `{t}` is not a whole number")))?,
                )
            }
            "ACCESS_LEVEL" => change.access_level = Some(text()?.parse::<AccessLevel>()?),
            "COMMENT" => change.comment = Some(text()?),
            other => {
                return Err(invalid(format!(
                    "unknown table option `{other}` (STORAGE_ID, FLUSH_POLICY, TTL_SECONDS, \
                     ACCESS_LEVEL, COMMENT)"
                )));
            }
        }
    }
    Ok((change, storage))
}

fn opt_text(s: Option<String>) -> KalamValue {
    s.map_or(KalamValue::Null, KalamValue::Text)
}

fn job_line(what: &str, job: &JobRecord) -> String {
    format!(
        "{what}: job {} {}, {} rows, {} files, {} bytes",
        job.id, job.status, job.rows, job.files, job.bytes
    )
}

async fn storages_view(store: &Store) -> Result<ResultSet, CliError> {
    let t = KalamDataType::Text;
    let rows = store
        .storages()
        .await?
        .into_iter()
        .map(|s| {
            vec![
                KalamValue::Text(s.id.to_string()),
                KalamValue::Text(s.hot.kind().into()),
                KalamValue::Text(s.hot.location().into()),
                KalamValue::Text(s.cold_url.clone()),
                opt_text(
                    s.cache
                        .as_ref()
                        .map(|c| format!("memory {} B, disk {} B", c.memory_bytes, c.disk_bytes)),
                ),
            ]
        })
        .collect();
    Ok(result(
        &[
            ("storage_id", t),
            ("engine", t),
            ("hot", t),
            ("cold", t),
            ("cache", t),
        ],
        rows,
    ))
}

async fn tables_view(store: &Store, ns: Option<&NamespaceId>) -> Result<ResultSet, CliError> {
    let t = KalamDataType::Text;
    let rows = store
        .tables(ns)
        .await?
        .into_iter()
        .map(|d| {
            vec![
                KalamValue::Text(d.id.namespace.to_string()),
                KalamValue::Text(d.id.table.to_string()),
                KalamValue::Text(d.table_type.to_string()),
                KalamValue::Text(d.storage_id.to_string()),
                KalamValue::Text(d.options.flush_policy.to_string()),
                d.options
                    .ttl_seconds
                    .map_or(KalamValue::Null, |s| KalamValue::BigInt(s as i64)),
                KalamValue::BigInt(i64::from(d.schema.version)),
            ]
        })
        .collect();
    Ok(result(
        &[
            ("namespace", t),
            ("table_name", t),
            ("table_type", t),
            ("storage_id", t),
            ("flush_policy", t),
            ("ttl_seconds", KalamDataType::BigInt),
            ("schema_version", KalamDataType::BigInt),
        ],
        rows,
    ))
}

fn columns_view(defs: &[TableDefinition]) -> ResultSet {
    let t = KalamDataType::Text;
    let rows = defs
        .iter()
        .flat_map(|d| {
            d.columns().iter().map(move |c| {
                vec![
                    KalamValue::Text(d.id.namespace.to_string()),
                    KalamValue::Text(d.id.table.to_string()),
                    KalamValue::Text(c.name.clone()),
                    KalamValue::BigInt(i64::from(c.ordinal)),
                    KalamValue::Text(c.data_type.to_string()),
                    KalamValue::Boolean(c.nullable),
                    KalamValue::Boolean(c.primary_key),
                    opt_text(
                        c.default
                            .as_ref()
                            .map(|v| crate::value::to_text(v, c.data_type)),
                    ),
                ]
            })
        })
        .collect();
    result(
        &[
            ("namespace", t),
            ("table_name", t),
            ("column_name", t),
            ("ordinal", KalamDataType::BigInt),
            ("data_type", t),
            ("is_nullable", KalamDataType::Boolean),
            ("primary_key", KalamDataType::Boolean),
            ("column_default", t),
        ],
        rows,
    )
}

fn jobs_view(jobs: &[JobRecord]) -> ResultSet {
    let t = KalamDataType::Text;
    let b = KalamDataType::BigInt;
    let ts = KalamDataType::Timestamp;
    let at = |ms: Option<i64>| ms.map_or(KalamValue::Null, |m| KalamValue::Timestamp(m * 1000));
    let rows = jobs
        .iter()
        .map(|j| {
            vec![
                KalamValue::Text(j.id.clone()),
                KalamValue::Text(j.kind.to_string()),
                opt_text(j.table.as_ref().map(ToString::to_string)),
                opt_text(j.user.as_ref().map(ToString::to_string)),
                KalamValue::Text(j.status.to_string()),
                at(Some(j.created_at_ms)),
                at(j.started_at_ms),
                at(j.ended_at_ms),
                KalamValue::BigInt(j.rows as i64),
                KalamValue::BigInt(j.bytes as i64),
                KalamValue::BigInt(j.files as i64),
                opt_text(j.error.clone()),
            ]
        })
        .collect();
    result(
        &[
            ("job_id", t),
            ("kind", t),
            ("table_name", t),
            ("user_id", t),
            ("status", t),
            ("created_at", ts),
            ("started_at", ts),
            ("ended_at", ts),
            ("rows", b),
            ("bytes", b),
            ("files", b),
            ("error", t),
        ],
        rows,
    )
}

fn view_schema(view: &ResultSet) -> SchemaVersion {
    SchemaVersion {
        version: 1,
        columns: view
            .columns
            .iter()
            .enumerate()
            .map(|(i, (n, t))| {
                let mut c = ColumnDefinition::new(n.clone(), *t);
                c.ordinal = i as u32;
                c
            })
            .collect(),
        created_at_ms: 0,
        change: String::new(),
    }
}

fn to_batch(view: &ResultSet, schema: &SchemaVersion) -> Result<RecordBatch, CliError> {
    let arrays = view
        .columns
        .iter()
        .enumerate()
        .map(|(i, (n, t))| {
            let values: Vec<KalamValue> = view.rows.iter().map(|r| r[i].clone()).collect();
            Ok(array_from_values(n, *t, &values)?)
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    RecordBatch::try_new(schema.arrow_schema(false), arrays).map_err(arrow_err)
}

/// Writes `s` to stderr, ignoring a closed pipe.
pub fn note(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}
