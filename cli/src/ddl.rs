//! Statements that change the catalog: storages, namespaces, tables and `ALTER TABLE`
//! (schema changes, options, storage moves).

use kalamstore::{
    AccessLevel, CacheSpec, ChangeRetention, ColumnDefinition, DeltaPublishing, FlushPolicy,
    HotEngine, NamespaceId, OptionsChange, S3Options, SchemaChange, StorageDefinition, StorageId,
    TableDefinition, TableId, TableOptions, TableType,
};

use crate::error::{CliError, invalid};
use crate::maintenance::job_line;
use crate::parse::{AlterAction, ColumnSpec, Command, Literal, StorageKind};
use crate::session::{Outcome, Session};
use crate::value::to_value;

impl Session {
    /// Runs a catalog statement.
    pub(crate) async fn ddl(&self, command: Command) -> Result<Outcome, CliError> {
        let store = &self.store;
        Ok(Outcome::Done(match command {
            Command::CreateStorage {
                id,
                kind,
                path,
                engine,
                cache,
                metadata_cache,
                config,
            } => {
                let mut def = self.storage_definition(&id, kind, path, engine, cache, config)?;
                def.metadata_cache_bytes = metadata_cache.as_deref().map(parse_size).transpose()?;
                store.create_storage(def).await?;
                format!("CREATE STORAGE {id}")
            }
            Command::DropStorage { id, if_exists } => {
                match store.drop_storage(&StorageId::new(&id)?, if_exists).await? {
                    true => format!("DROP STORAGE {id}"),
                    false => format!("DROP STORAGE {id}: did not exist"),
                }
            }
            Command::StorageCheck(id) => {
                store.check_storage(&StorageId::new(&id)?).await?;
                format!("STORAGE CHECK {id}: write, read, list and delete ok")
            }
            Command::CreateNamespace {
                name,
                if_not_exists,
            } => {
                let ns = NamespaceId::new(&name)?;
                match store.create_namespace(&ns, if_not_exists).await? {
                    true => format!("CREATE NAMESPACE {name}"),
                    false => format!("CREATE NAMESPACE {name}: exists"),
                }
            }
            Command::DropNamespace {
                name,
                if_exists,
                cascade,
            } => {
                let ns = NamespaceId::new(&name)?;
                if if_exists && !store.namespaces().await?.contains(&ns) {
                    format!("DROP NAMESPACE {name}: did not exist")
                } else {
                    store.drop_namespace(&ns, cascade).await?;
                    format!("DROP NAMESPACE {name}")
                }
            }
            Command::CreateTable {
                kind,
                if_not_exists,
                table,
                columns,
                options,
            } => {
                let def = self.table_definition(kind, &table, &columns, &options)?;
                match store.create_table(def, if_not_exists).await? {
                    true => format!("CREATE {kind} TABLE {table}"),
                    false => format!("CREATE TABLE {table}: exists"),
                }
            }
            Command::DropTable { table, if_exists } => {
                match store.drop_table(&table, if_exists).await? {
                    true => format!("DROP TABLE {table}"),
                    false => format!("DROP TABLE {table}: did not exist"),
                }
            }
            Command::AlterTable { table, action } => self.alter(&table, action).await?,
            other => return Err(invalid(format!("not a catalog statement: {other:?}"))),
        }))
    }

    fn storage_definition(
        &self,
        id: &str,
        kind: StorageKind,
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
            StorageKind::Filesystem => {
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
            StorageKind::S3 => {
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
            StorageKind::Memory => (HotEngine::Memory, "memory://".to_owned()),
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
            metadata_cache_bytes: None,
            created_at_ms: 0,
        })
    }

    fn table_definition(
        &self,
        table_type: TableType,
        id: &TableId,
        columns: &[ColumnSpec],
        options: &[(String, Literal)],
    ) -> Result<TableDefinition, CliError> {
        let id = id.clone();
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
            delta: change.delta.unwrap_or_default(),
            change_retention: change.change_retention.unwrap_or_default(),
        };
        let storage = storage.unwrap_or_else(|| self.default_storage().clone());
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
            let v = to_value(l, data_type, &c.name, self.params())?;
            def = def.with_default(v);
        }
        Ok(def)
    }

    async fn alter(&self, id: &TableId, action: AlterAction) -> Result<String, CliError> {
        let id = id.clone();
        let store = &self.store;
        let change = match action {
            AlterAction::AddColumn(c) => SchemaChange::AddColumn(self.column_definition(&c)?),
            AlterAction::Change(change) => change,
            AlterAction::SetStorage(storage) => return self.move_to(&id, &storage).await,
            AlterAction::Republish => {
                let job = store.republish_table(&id).await?;
                return Ok(job_line(&format!("REPUBLISH {id}"), &job));
            }
            AlterAction::SetProperties(props) => {
                let (change, storage) = table_properties(&props)?;
                let mut lines = Vec::new();
                if change != OptionsChange::default() {
                    let def = store.set_table_options(&id, &change).await?;
                    let o = &def.options;
                    lines.push(format!(
                        "ALTER TABLE {id}: FLUSH_POLICY {}, TTL_SECONDS {}, ACCESS_LEVEL {}, \
                         DELTA {}, CHANGE_RETENTION {}",
                        o.flush_policy,
                        o.ttl_seconds.map_or("-".into(), |t| t.to_string()),
                        o.access_level,
                        o.delta,
                        o.change_retention
                    ));
                }
                if let Some(storage) = storage {
                    lines.push(self.move_to(&id, storage.as_str()).await?);
                }
                return Ok(lines.join("\n"));
            }
        };
        let def = store.alter_table(&id, &change).await?;
        Ok(format!(
            "ALTER TABLE {id}: {change} (schema version {})",
            def.schema.version
        ))
    }

    async fn move_to(&self, id: &TableId, storage: &str) -> Result<String, CliError> {
        let storage = StorageId::new(storage)?;
        let bar = self.spinner(&format!("moving {id} to storage {storage}"));
        let job = self.store.move_table(id, &storage).await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        Ok(match job? {
            Some(job) => job_line(&format!("MOVE {id} to {storage}"), &job),
            None => format!("MOVE {id}: already on storage {storage}"),
        })
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
            "DELTA" => {
                let v = match value {
                    Literal::Bool(b) => b.to_string(),
                    _ => text()?,
                };
                change.delta = Some(v.parse::<DeltaPublishing>()?);
            }
            "CHANGE_RETENTION" => {
                change.change_retention = Some(text()?.parse::<ChangeRetention>()?);
            }
            other => {
                return Err(invalid(format!(
                    "unknown table option `{other}` (STORAGE_ID, FLUSH_POLICY, TTL_SECONDS, \
                     ACCESS_LEVEL, COMMENT, DELTA, CHANGE_RETENTION)"
                )));
            }
        }
    }
    Ok((change, storage))
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
