//! A table's Delta log in its cold store: `<table>/_delta_log/<version as 20 digits>.json`
//! commits (each written create-if-absent, so two writers never both commit a version), a
//! classic checkpoint every [`CHECKPOINT_EVERY`] versions with `_last_checkpoint`, and the
//! replay of the last checkpoint and the commits after it into the log's current state.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::actions::{Action, Add, MetaData, Protocol};
use crate::error::{Error, Result};
use crate::format::is_delta_log_file;

/// A checkpoint is written after every this many commits.
pub(crate) const CHECKPOINT_EVERY: u64 = 10;

/// What the log says now.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogState {
    /// The latest version, `None` when there is no log.
    pub(crate) version: Option<u64>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) metadata: Option<MetaData>,
    /// Live files by path.
    pub(crate) files: BTreeMap<String, Add>,
}

impl LogState {
    /// Applies one commit's (or checkpoint's) actions: removes before adds.
    fn apply(&mut self, actions: Vec<Action>, version: u64) {
        let mut adds = Vec::new();
        for action in actions {
            match action {
                Action::Protocol(p) => self.protocol = Some(p),
                Action::MetaData(m) => self.metadata = Some(m),
                Action::Remove(r) => {
                    self.files.remove(&r.path);
                }
                Action::Add(a) => adds.push(a),
                Action::CommitInfo(_) | Action::Other => {}
            }
        }
        for a in adds {
            self.files.insert(a.path.clone(), a);
        }
        self.version = Some(version);
    }
}

/// The Delta log of one table.
pub(crate) struct DeltaLog {
    store: Arc<dyn ObjectStore>,
    /// The table's directory in the store: the Delta table's root.
    root: String,
}

fn os(op: String) -> impl FnOnce(object_store::Error) -> Error {
    move |source| Error::ObjectStore { op, source }
}

impl DeltaLog {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, root: String) -> Self {
        Self { store, root }
    }

    fn path(&self, name: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{name}", self.root))
    }

    fn commit_path(&self, version: u64) -> ObjectPath {
        self.path(&format!("_delta_log/{version:020}.json"))
    }

    /// Versions of the JSON commits in the log, ascending.
    async fn versions(&self) -> Result<Vec<u64>> {
        let dir = self.path("_delta_log");
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(os(format!("listing {dir}")))?;
        let mut versions: Vec<u64> = listed
            .iter()
            .filter_map(|o| {
                let name = o.location.filename()?;
                let digits = name.strip_suffix(".json")?;
                (digits.len() == 20).then(|| digits.parse().ok()).flatten()
            })
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// The log's current state: the last checkpoint (when `_last_checkpoint` names one), then
    /// the commits after it, each commit's removes before its adds (so a file whose deletion
    /// vector changed keeps its new one).
    pub(crate) async fn state(&self) -> Result<LogState> {
        let versions = self.versions().await?;
        let mut state = match self.last_checkpoint().await? {
            Some(v) if versions.contains(&v) => self.read_checkpoint(v).await?,
            _ => LogState::default(),
        };
        for version in versions {
            if state.version.is_some_and(|v| version <= v) {
                continue;
            }
            let path = self.commit_path(version);
            let bytes = self.get(&path).await?;
            let text = String::from_utf8_lossy(&bytes);
            let mut actions = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                actions.push(Action::parse(line).map_err(|e| Error::Corrupt {
                    what: format!("Delta commit {path}"),
                    reason: e.to_string(),
                })?);
            }
            state.apply(actions, version);
        }
        Ok(state)
    }

    async fn get(&self, path: &ObjectPath) -> Result<bytes::Bytes> {
        let what = format!("reading {path}");
        self.store
            .get(path)
            .await
            .map_err(os(what.clone()))?
            .bytes()
            .await
            .map_err(os(what))
    }

    /// The version `_last_checkpoint` names, if there is one.
    async fn last_checkpoint(&self) -> Result<Option<u64>> {
        let path = self.path("_delta_log/_last_checkpoint");
        let bytes = match self.store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(os(format!("reading {path}")))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(Error::ObjectStore {
                    op: format!("reading {path}"),
                    source,
                });
            }
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                what: path.to_string(),
                reason: e.to_string(),
            })?;
        Ok(value["version"].as_u64())
    }

    /// The state a classic checkpoint holds: its rows back to JSON actions.
    async fn read_checkpoint(&self, version: u64) -> Result<LogState> {
        let path = self.path(&format!("_delta_log/{version:020}.checkpoint.parquet"));
        let corrupt = |reason: String| Error::Corrupt {
            what: format!("Delta checkpoint {path}"),
            reason,
        };
        let bytes = self.get(&path).await?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1024)
            .map_err(|e| corrupt(e.to_string()))?;
        let mut json = arrow::json::ArrayWriter::new(Vec::new());
        for batch in reader {
            let batch = batch.map_err(|e| corrupt(e.to_string()))?;
            json.write(&batch).map_err(|e| corrupt(e.to_string()))?;
        }
        json.finish().map_err(|e| corrupt(e.to_string()))?;
        let rows: Vec<serde_json::Value> =
            serde_json::from_slice(&json.into_inner()).map_err(|e| corrupt(e.to_string()))?;
        let actions = rows
            .iter()
            .map(|row| Action::parse(&row.to_string()))
            .collect::<serde_json::Result<Vec<_>>>()
            .map_err(|e| corrupt(e.to_string()))?;
        let mut state = LogState::default();
        state.apply(actions, version);
        Ok(state)
    }

    /// Writes `version` with `actions`, create-if-absent. `Ok(false)` when another writer
    /// committed that version first.
    pub(crate) async fn commit(&self, version: u64, actions: &[Action]) -> Result<bool> {
        let mut body = String::new();
        for a in actions {
            let line = a.to_line().map_err(|e| Error::Corrupt {
                what: format!("a Delta action of {}", self.root),
                reason: e.to_string(),
            })?;
            body.push_str(&line);
            body.push('\n');
        }
        let path = self.commit_path(version);
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(body), options)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(source) => Err(Error::ObjectStore {
                op: format!("committing {path}"),
                source,
            }),
        }
    }

    /// Writes a file at the table's root (a deletion-vector file).
    pub(crate) async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(name);
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(os(format!("writing {path}")))
    }

    /// Writes the checkpoint of `state` at its version, then `_last_checkpoint`.
    pub(crate) async fn checkpoint(&self, state: &LogState) -> Result<()> {
        let Some(version) = state.version else {
            return Ok(());
        };
        let mut lines = Vec::new();
        if let Some(p) = &state.protocol {
            lines.push(Action::Protocol(p.clone()));
        }
        if let Some(m) = &state.metadata {
            lines.push(Action::MetaData(m.clone()));
        }
        lines.extend(state.files.values().cloned().map(Action::Add));
        let json = lines
            .iter()
            .map(Action::to_line)
            .collect::<serde_json::Result<Vec<_>>>()
            .map_err(|e| Error::Corrupt {
                what: format!("the Delta checkpoint of {}", self.root),
                reason: e.to_string(),
            })?
            .join("\n");
        let schema = checkpoint_schema();
        let arrow = Error::arrow("building a Delta checkpoint");
        let reader = arrow::json::ReaderBuilder::new(schema.clone())
            .build(Cursor::new(json.into_bytes()))
            .map_err(&arrow)?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(&arrow)?;
        let mut parquet = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut parquet, schema, None).map_err(|source| {
                Error::Parquet {
                    op: format!("writing the Delta checkpoint of {}", self.root),
                    source,
                }
            })?;
        for b in &batches {
            writer.write(b).map_err(|source| Error::Parquet {
                op: format!("writing the Delta checkpoint of {}", self.root),
                source,
            })?;
        }
        writer.close().map_err(|source| Error::Parquet {
            op: format!("writing the Delta checkpoint of {}", self.root),
            source,
        })?;
        let name = format!("_delta_log/{version:020}.checkpoint.parquet");
        self.put(&name, parquet).await?;
        let last = serde_json::json!({"version": version, "size": lines.len()}).to_string();
        self.put("_delta_log/_last_checkpoint", last.into_bytes())
            .await
    }

    /// Removes the log and the table's deletion-vector files.
    pub(crate) async fn delete_all(&self) -> Result<()> {
        let root = ObjectPath::from(self.root.as_str());
        let listed: Vec<_> = self
            .store
            .list(Some(&root))
            .try_collect()
            .await
            .map_err(os(format!("listing {root}")))?;
        for object in listed {
            let path = object.location.to_string();
            if !is_delta_log_file(&path) {
                continue;
            }
            match self.store.delete(&object.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::ObjectStore {
                        op: format!("deleting {path}"),
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

/// The columns of a classic checkpoint that kalamstore writes.
fn checkpoint_schema() -> SchemaRef {
    let text = || DataType::Utf8;
    let list = || DataType::List(Arc::new(Field::new("element", DataType::Utf8, true)));
    let map = || {
        DataType::Map(
            Arc::new(Field::new(
                "key_value",
                DataType::Struct(Fields::from(vec![
                    Field::new("key", DataType::Utf8, false),
                    Field::new("value", DataType::Utf8, true),
                ])),
                false,
            )),
            false,
        )
    };
    let dv = DataType::Struct(Fields::from(vec![
        Field::new("storageType", text(), true),
        Field::new("pathOrInlineDv", text(), true),
        Field::new("offset", DataType::Int32, true),
        Field::new("sizeInBytes", DataType::Int32, true),
        Field::new("cardinality", DataType::Int64, true),
    ]));
    let strukt = |fields: Vec<Field>| DataType::Struct(Fields::from(fields));
    Arc::new(Schema::new(vec![
        Field::new(
            "protocol",
            strukt(vec![
                Field::new("minReaderVersion", DataType::Int32, true),
                Field::new("minWriterVersion", DataType::Int32, true),
                Field::new("readerFeatures", list(), true),
                Field::new("writerFeatures", list(), true),
            ]),
            true,
        ),
        Field::new(
            "metaData",
            strukt(vec![
                Field::new("id", text(), true),
                Field::new("name", text(), true),
                Field::new("description", text(), true),
                Field::new(
                    "format",
                    strukt(vec![
                        Field::new("provider", text(), true),
                        Field::new("options", map(), true),
                    ]),
                    true,
                ),
                Field::new("schemaString", text(), true),
                Field::new("partitionColumns", list(), true),
                Field::new("configuration", map(), true),
                Field::new("createdTime", DataType::Int64, true),
            ]),
            true,
        ),
        Field::new(
            "add",
            strukt(vec![
                Field::new("path", text(), true),
                Field::new("partitionValues", map(), true),
                Field::new("size", DataType::Int64, true),
                Field::new("modificationTime", DataType::Int64, true),
                Field::new("dataChange", DataType::Boolean, true),
                Field::new("stats", text(), true),
                Field::new("tags", map(), true),
                Field::new("deletionVector", dv.clone(), true),
            ]),
            true,
        ),
        Field::new(
            "remove",
            strukt(vec![
                Field::new("path", text(), true),
                Field::new("deletionTimestamp", DataType::Int64, true),
                Field::new("dataChange", DataType::Boolean, true),
                Field::new("extendedFileMetadata", DataType::Boolean, true),
                Field::new("partitionValues", map(), true),
                Field::new("size", DataType::Int64, true),
                Field::new("deletionVector", dv, true),
            ]),
            true,
        ),
        Field::new(
            "txn",
            strukt(vec![
                Field::new("appId", text(), true),
                Field::new("version", DataType::Int64, true),
                Field::new("lastUpdated", DataType::Int64, true),
            ]),
            true,
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use object_store::memory::InMemory;

    use super::*;
    use crate::delta::actions::{DvDescriptor, Format, Remove};

    fn add(path: &str, deleted: Option<u64>) -> Add {
        Add {
            path: path.into(),
            partition_values: BTreeMap::from([("_user".into(), Some("alice".into()))]),
            size: 100,
            modification_time: 1,
            data_change: true,
            stats: Some("{\"numRecords\":10}".into()),
            deletion_vector: deleted.map(|cardinality| DvDescriptor {
                storage_type: "i".into(),
                path_or_inline_dv: "abcde".into(),
                offset: None,
                size_in_bytes: 4,
                cardinality,
            }),
        }
    }

    #[tokio::test]
    async fn a_checkpoint_and_the_commits_after_it_replay_like_every_commit() {
        let log = DeltaLog::new(Arc::new(InMemory::new()), "app/t".into());
        let metadata = MetaData {
            id: "id".into(),
            name: None,
            format: Format {
                provider: "parquet".into(),
                options: BTreeMap::new(),
            },
            schema_string: "{}".into(),
            partition_columns: vec!["_user".into()],
            configuration: BTreeMap::new(),
            created_time: Some(5),
        };
        let protocol = Protocol {
            min_reader_version: 3,
            min_writer_version: 7,
            reader_features: vec!["deletionVectors".into()],
            writer_features: vec!["deletionVectors".into()],
        };
        let first = [Action::Protocol(protocol), Action::MetaData(metadata)];
        assert!(log.commit(0, &first).await.unwrap());
        assert!(
            !log.commit(0, &first).await.unwrap(),
            "a version is written once"
        );
        for v in 1..=12u64 {
            let mut actions = vec![Action::Add(add(&format!("f{v}.parquet"), None))];
            if v > 1 {
                let old = add(&format!("f{}.parquet", v - 1), None);
                actions.push(Action::Remove(Remove::of(&old, true, 2)));
                actions.push(Action::Add(add(&format!("f{}.parquet", v - 1), Some(v))));
            }
            assert!(log.commit(v, &actions).await.unwrap());
            if v == 10 {
                let before = log.state().await.unwrap();
                log.checkpoint(&before).await.unwrap();
                let from_checkpoint = log.read_checkpoint(10).await.unwrap();
                assert_eq!(from_checkpoint.files, before.files);
                assert_eq!(from_checkpoint.metadata, before.metadata);
                assert_eq!(from_checkpoint.protocol, before.protocol);
            }
        }
        let state = log.state().await.unwrap();
        assert_eq!(state.version, Some(12));
        assert_eq!(state.files.len(), 12);
        assert_eq!(
            state.files["f11.parquet"]
                .deletion_vector
                .as_ref()
                .map(|d| d.cardinality),
            Some(12)
        );
        assert_eq!(state.metadata.unwrap().created_time, Some(5));
    }
}
