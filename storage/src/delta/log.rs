//! A table's Delta log in its cold store: `<table>/_delta_log/<version as 20 digits>.json`
//! commits (each written create-if-absent, so two writers never both commit a version), a
//! classic checkpoint every [`CHECKPOINT_EVERY`] versions with `_last_checkpoint`, and the
//! replay of the commits into the log's current state.

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

    /// Replays every commit of the log (a commit's removes before its adds, so a file whose
    /// deletion vector changed keeps its new one).
    pub(crate) async fn state(&self) -> Result<LogState> {
        let mut state = LogState::default();
        for version in self.versions().await? {
            let path = self.commit_path(version);
            let what = format!("reading {path}");
            let bytes = self
                .store
                .get(&path)
                .await
                .map_err(os(what.clone()))?
                .bytes()
                .await
                .map_err(os(what))?;
            let text = String::from_utf8_lossy(&bytes);
            let mut adds = Vec::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let action = Action::parse(line).map_err(|e| Error::Corrupt {
                    what: format!("Delta commit {path}"),
                    reason: e.to_string(),
                })?;
                match action {
                    Action::Protocol(p) => state.protocol = Some(p),
                    Action::MetaData(m) => state.metadata = Some(m),
                    Action::Remove(r) => {
                        state.files.remove(&r.path);
                    }
                    Action::Add(a) => adds.push(a),
                    Action::CommitInfo(_) | Action::Other => {}
                }
            }
            for a in adds {
                state.files.insert(a.path.clone(), a);
            }
            state.version = Some(version);
        }
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
