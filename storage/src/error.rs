//! The core crate's error types: [`Error`] for every operation and [`DecodeError`] for bad bytes.

/// Result alias used throughout kalamstore.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in kalamstore's core and, mapped into [`Error::Engine`], in an engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named partition does not exist.
    #[error("partition `{partition}` not found")]
    PartitionNotFound {
        /// The partition that was asked for.
        partition: String,
    },
    /// A partition name broke the naming rules.
    #[error("invalid partition name `{name}`: {reason}")]
    InvalidPartitionName {
        /// The refused name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// An identifier (namespace, table, user, storage) broke the naming rules.
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidId {
        /// What kind of identifier it was meant to be.
        kind: &'static str,
        /// The refused text.
        value: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// A data type was malformed or had out-of-range parameters.
    #[error("invalid data type: {reason}")]
    InvalidType {
        /// What is wrong with it.
        reason: String,
    },
    /// An arrow type that no `KalamDataType` maps to.
    #[error("arrow type {data_type} has no kalamstore equivalent")]
    UnsupportedArrowType {
        /// The arrow type, as arrow prints it.
        data_type: String,
    },
    /// A value did not fit its column.
    #[error("column `{column}`: {reason}")]
    InvalidValue {
        /// The column the value was meant for.
        column: String,
        /// Why it does not fit.
        reason: String,
    },
    /// A table definition is inconsistent.
    #[error("invalid definition of table {table}: {reason}")]
    InvalidSchema {
        /// The table, as `namespace.table`.
        table: String,
        /// What is inconsistent.
        reason: String,
    },
    /// Stored bytes could not be decoded.
    #[error("could not decode {what}")]
    Decode {
        /// What was being decoded (a row, a key, a table definition, ...).
        what: &'static str,
        /// The precise problem.
        #[source]
        source: DecodeError,
    },
    /// An arrow computation failed.
    #[error("arrow failed while {op}")]
    Arrow {
        /// What kalamstore was doing.
        op: &'static str,
        /// arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The engine cannot do this at all.
    #[error("{engine} does not support {op}")]
    Unsupported {
        /// The engine's name.
        engine: &'static str,
        /// The refused operation.
        op: &'static str,
    },
    /// The backend was closed (or fenced by another opener) and takes no more requests.
    #[error("{engine} is closed: {reason}")]
    Closed {
        /// The engine's name.
        engine: &'static str,
        /// Why it closed.
        reason: &'static str,
    },
    /// An object store URL that cannot be opened.
    #[error("bad object store URL `{url}`: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// An object store request failed.
    #[error("object store failed while {op}")]
    ObjectStore {
        /// What kalamstore was doing, naming the object.
        op: String,
        /// object_store's error.
        #[source]
        source: object_store::Error,
    },
    /// Reading or writing a Parquet file failed.
    #[error("parquet failed while {op}")]
    Parquet {
        /// What kalamstore was doing, naming the file.
        op: String,
        /// parquet's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A local file-system operation failed.
    #[error("I/O failed while {op}")]
    Io {
        /// What kalamstore was doing, naming the path.
        op: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No namespace with this name.
    #[error("namespace `{namespace}` not found")]
    NamespaceNotFound {
        /// The namespace asked for.
        namespace: String,
    },
    /// A namespace with this name exists already.
    #[error("namespace `{namespace}` already exists")]
    NamespaceExists {
        /// The namespace.
        namespace: String,
    },
    /// A namespace still holds tables.
    #[error("namespace `{namespace}` still holds {tables} table(s); drop them or use CASCADE")]
    NamespaceNotEmpty {
        /// The namespace.
        namespace: String,
        /// How many tables it holds.
        tables: usize,
    },
    /// No table with this id.
    #[error("table {table} not found")]
    TableNotFound {
        /// `namespace.table`.
        table: String,
    },
    /// A table with this id exists already.
    #[error("table {table} already exists")]
    TableExists {
        /// `namespace.table`.
        table: String,
    },
    /// The table moved to another storage or was dropped while the operation waited for it;
    /// the store retries on the table's new home.
    #[error("table {table} moved or was dropped while the operation waited")]
    TableRetired {
        /// `namespace.table`.
        table: String,
    },
    /// Another job (a move or a drop) is working on the table.
    #[error("table {table} is busy with job {job}")]
    TableBusy {
        /// `namespace.table`.
        table: String,
        /// The job.
        job: String,
    },
    /// A storage move that cannot start (same location, in progress, unreachable target).
    #[error("cannot move table {table} to storage `{storage}`: {reason}")]
    MoveRefused {
        /// `namespace.table`.
        table: String,
        /// The target storage id.
        storage: String,
        /// Why.
        reason: String,
    },
    /// No storage with this id.
    #[error("storage `{storage}` not found")]
    StorageNotFound {
        /// The storage id.
        storage: String,
    },
    /// A storage with this id exists already.
    #[error("storage `{storage}` already exists")]
    StorageExists {
        /// The storage id.
        storage: String,
    },
    /// A storage cannot be dropped while a table lives on it.
    #[error("storage `{storage}` is used by table {table}")]
    StorageInUse {
        /// The storage id.
        storage: String,
        /// One table that uses it.
        table: String,
    },
    /// A storage failed its write/read/list/delete check.
    #[error("storage `{storage}` failed its check while {step}")]
    StorageCheck {
        /// The storage id.
        storage: String,
        /// The step that failed, e.g. "writing an object to file:///data/cold".
        step: String,
        /// The failure.
        #[source]
        source: Box<Error>,
    },
    /// An insert of a key that exists already.
    #[error("table {table}: a row with key {key} already exists")]
    DuplicateKey {
        /// `namespace.table`.
        table: String,
        /// The key, as its values.
        key: String,
    },
    /// A USER table was used without naming a user, or a non-USER table with one.
    #[error("table {table}: {reason}")]
    Scope {
        /// `namespace.table`.
        table: String,
        /// What was wrong, e.g. "a USER table needs a user id".
        reason: &'static str,
    },
    /// A change-feed cursor older than what the table's change log still holds: the changes
    /// right after it were trimmed (`CHANGE_RETENTION`). Start again from a snapshot.
    #[error(
        "table {table}: the change log no longer holds changes after _seq {after}; the oldest \
         it holds start at _seq {oldest} (re-read the table, then follow from its _seq)"
    )]
    ChangeGap {
        /// `namespace.table`.
        table: String,
        /// The cursor asked for.
        after: i64,
        /// The oldest `_seq` the log can still return (its floor).
        oldest: i64,
    },
    /// No consumer with this name.
    #[error("consumer `{name}` not found")]
    ConsumerNotFound {
        /// The name asked for.
        name: String,
    },
    /// A consumer with this name exists already.
    #[error("consumer `{name}` exists already")]
    ConsumerExists {
        /// The name.
        name: String,
    },
    /// No login with this name.
    #[error("user `{name}` not found")]
    UserNotFound {
        /// The name asked for.
        name: String,
    },
    /// A login with this name exists already.
    #[error("user `{name}` exists already")]
    UserExists {
        /// The name.
        name: String,
    },
    /// Another process has the data directory open.
    #[error("data directory {dir} is in use by {holder}")]
    DataDirInUse {
        /// The data directory.
        dir: String,
        /// Who holds it: `pid N`, or `another process` when its lock file names none.
        holder: String,
    },
    /// No live query with this id in this process.
    #[error("live query `{id}` not found")]
    LiveQueryNotFound {
        /// The id asked for.
        id: String,
    },
    /// The live query was killed (`KILL LIVE QUERY`).
    #[error("live query `{id}` was killed")]
    LiveQueryKilled {
        /// Its id.
        id: String,
    },
    /// The table keeps no change log (`CHANGE_RETENTION = 'off'`).
    #[error("table {table} keeps no change log (CHANGE_RETENTION is off)")]
    NoChangeLog {
        /// `namespace.table`.
        table: String,
    },
    /// A filter or projection that does not fit the table.
    #[error("table {table}: {reason}")]
    InvalidQuery {
        /// `namespace.table`.
        table: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No job with this id.
    #[error("job `{job}` not found")]
    JobNotFound {
        /// The job id.
        job: String,
    },
    /// A job was cancelled before it committed.
    #[error("job `{job}` was cancelled")]
    JobCancelled {
        /// The job id.
        job: String,
    },
    /// A test's failure point fired (see `Failpoints`).
    #[error("injected failure at `{point}`")]
    Injected {
        /// The failure point.
        point: String,
    },
    /// A job ran past its kind's time limit and was stopped at its next safe point.
    #[error("job `{job}` ran longer than its limit of {limit:?}")]
    JobTimedOut {
        /// The job id.
        job: String,
        /// The limit of its kind.
        limit: std::time::Duration,
    },
    /// Stored metadata is inconsistent (a manifest entry, a deletion vector, a catalog record).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// What was being read, naming the table or file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An engine's own failure, with the engine's error as the source.
    #[error("{engine} failed while {op}")]
    Engine {
        /// The engine's name.
        engine: &'static str,
        /// What it was doing, e.g. "writing a batch to partition `p`".
        op: String,
        /// The engine's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Wraps an engine's own error with the engine name and what it was doing.
    pub fn engine(
        engine: &'static str,
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Engine {
            engine,
            op: op.into(),
            source: source.into(),
        }
    }

    /// Whether trying again may succeed: an engine, object-store or I/O failure (a store that
    /// was unreachable, a timeout, a job past its time limit), also when Parquet met it
    /// writing or reading a file. Bad
    /// input, missing objects of the catalog, corruption and cancellation are final.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Engine { .. }
            | Self::ObjectStore { .. }
            | Self::Io { .. }
            | Self::Injected { .. }
            | Self::JobTimedOut { .. } => true,
            Self::Parquet { source, .. } => {
                matches!(source, parquet::errors::ParquetError::External(_))
            }
            _ => false,
        }
    }

    /// The error and every source below it, joined by `: ` (for logs and job records).
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    /// Maps an arrow failure with what kalamstore was doing (for `map_err`).
    pub fn arrow(op: &'static str) -> impl Fn(arrow::error::ArrowError) -> Self {
        move |source| Self::Arrow { op, source }
    }

    /// Maps a helper task that died (panicked or was cancelled) into [`Error::Engine`] naming
    /// the engine and what it was doing. Every engine that runs work on its own runtime or on
    /// a blocking thread maps its join failures through this.
    pub fn task(
        engine: &'static str,
        op: impl Into<String>,
    ) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::engine(engine, op, source)
    }

    /// Wraps a decode failure with what was being decoded.
    pub fn decode(what: &'static str, source: DecodeError) -> Self {
        Self::Decode { what, source }
    }
}

/// Why a byte string is not a valid encoding. Decoders of untrusted bytes return this, never panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before a field was complete.
    #[error("input ends at byte {at}, {needed} more bytes needed")]
    Truncated {
        /// Offset where the missing field starts.
        at: usize,
        /// How many bytes the field needs.
        needed: usize,
    },
    /// A length prefix claims more bytes than the input holds.
    #[error("length {len} at byte {at} exceeds the {remaining} bytes left")]
    LengthTooLarge {
        /// Offset of the length prefix.
        at: usize,
        /// The claimed length.
        len: usize,
        /// Bytes actually left.
        remaining: usize,
    },
    /// A value tag that no type has.
    #[error("unknown value tag 0x{tag:02x} at byte {at}")]
    UnknownTag {
        /// The tag byte.
        tag: u8,
        /// Its offset.
        at: usize,
    },
    /// A value tag that does not match the column's type.
    #[error("column {column} expects tag 0x{expected:02x}, found 0x{found:02x}")]
    TagMismatch {
        /// Column position.
        column: usize,
        /// Tag of the column's type.
        expected: u8,
        /// Tag in the bytes.
        found: u8,
    },
    /// A text or JSON payload that is not UTF-8.
    #[error("invalid UTF-8 at byte {at}")]
    InvalidUtf8 {
        /// Offset of the payload.
        at: usize,
    },
    /// A byte that must be 0 or 1 was something else.
    #[error("invalid boolean byte {byte} at {at}")]
    InvalidBool {
        /// The byte.
        byte: u8,
        /// Its offset.
        at: usize,
    },
    /// A format version this build cannot read.
    #[error("unsupported format version {version}")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// Bytes left over after a complete encoding.
    #[error("{extra} unexpected trailing bytes")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// More columns in a row than its schema has.
    #[error("row has {found} columns, schema has {expected}")]
    TooManyColumns {
        /// Columns in the schema.
        expected: usize,
        /// Columns in the row.
        found: usize,
    },
    /// A field is out of its valid range (a bad DECIMAL precision, an empty name, ...).
    #[error("invalid field: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
    /// A protobuf message that prost cannot decode.
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}
