//! [`Command`]: one statement of kalamstore's dialect as parsed, and [`Literal`], a literal as
//! written (typed later against its column, so a prepared statement binds `$n` each time).

use kalamstore::{ConsumerStart, TableId, TableType};
use kalamstore_sql::SubscribeRequest;

use super::copy::FileFormat;
use super::storages::StorageKind;
use super::tables::{AlterAction, ColumnSpec};

/// A literal as written, typed later against its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `NULL`.
    Null,
    /// `TRUE` / `FALSE`.
    Bool(bool),
    /// A number as written (sign included).
    Number(String),
    /// A quoted string.
    String(String),
    /// `$n`, 1-based.
    Placeholder(usize),
}

/// One statement of the dialect.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `CREATE STORAGE`.
    CreateStorage {
        /// Storage id.
        id: String,
        /// `TYPE`.
        kind: StorageKind,
        /// `PATH` / `BASE_DIRECTORY`.
        path: Option<String>,
        /// `ENGINE`.
        engine: Option<String>,
        /// `CACHE (MEMORY '..', DISK '..')`.
        cache: Option<(String, Option<String>)>,
        /// `METADATA CACHE '..'`.
        metadata_cache: Option<String>,
        /// `CONFIG '<json>'`.
        config: Option<String>,
    },
    /// `DROP STORAGE`.
    DropStorage {
        /// Storage id.
        id: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW STORAGES`.
    ShowStorages,
    /// `STORAGE CHECK <id>`.
    StorageCheck(String),
    /// `CREATE NAMESPACE`.
    CreateNamespace {
        /// Name.
        name: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `DROP NAMESPACE`.
    DropNamespace {
        /// Name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
        /// `CASCADE`.
        cascade: bool,
    },
    /// `SHOW NAMESPACES`.
    ShowNamespaces,
    /// `CREATE [USER|SHARED|STREAM] TABLE`.
    CreateTable {
        /// `USER`, `SHARED` (default) or `STREAM`.
        kind: TableType,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// `ns.t`.
        table: TableId,
        /// Columns.
        columns: Vec<ColumnSpec>,
        /// `WITH (K = v, ...)`, keys upper-cased.
        options: Vec<(String, Literal)>,
    },
    /// `ALTER TABLE ns.t <action>`.
    AlterTable {
        /// `ns.t`.
        table: TableId,
        /// What changes.
        action: AlterAction,
    },
    /// `DROP TABLE`.
    DropTable {
        /// `ns.t`.
        table: TableId,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW TABLES [IN ns]`.
    ShowTables(Option<String>),
    /// `DESCRIBE TABLE ns.t`.
    Describe(TableId),
    /// `STORAGE FLUSH TABLE ns.t [FOR USER 'u']` / `STORAGE FLUSH ALL [IN ns]`.
    Flush {
        /// One table, or all.
        table: Option<TableId>,
        /// Namespace of `ALL IN ns`.
        namespace: Option<String>,
        /// One user.
        user: Option<String>,
    },
    /// `STORAGE COMPACT TABLE ns.t`.
    Compact(TableId),
    /// `SHOW MANIFEST FOR ns.t`.
    ShowManifest(TableId),
    /// `SHOW STATS FOR TABLE ns.t`.
    ShowStats(TableId),
    /// `SHOW STATS`: the cache counters of every opened storage.
    ShowCacheStats,
    /// `KILL JOB 'id'`.
    KillJob(String),
    /// `SUBSCRIBE TO ns.t [FOR ALL USERS] [WHERE cond] [OPTIONS (last_rows = N, from_seq_id =
    /// S, batch_size = B)]`.
    Subscribe(SubscribeRequest),
    /// `SHOW LIVE QUERIES`.
    ShowLiveQueries,
    /// `CREATE CONSUMER name ON ns.t [FOR ALL USERS] [FROM EARLIEST | FROM <seq>]`.
    CreateConsumer {
        /// Its name.
        name: String,
        /// `ns.t`.
        table: TableId,
        /// `FOR ALL USERS`.
        all_users: bool,
        /// Where it starts (default: after what committed so far).
        start: ConsumerStart,
    },
    /// `CONSUME FROM name [LIMIT n]`.
    Consume {
        /// The consumer.
        name: String,
        /// Most changes returned.
        limit: Option<usize>,
    },
    /// `ACK name UPTO <seq>`.
    Ack {
        /// The consumer.
        name: String,
        /// Every change up to this `_seq` is done.
        seq: i64,
    },
    /// `DROP CONSUMER [IF EXISTS] name`.
    DropConsumer {
        /// The consumer.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW CONSUMERS`.
    ShowConsumers,
    /// `KILL LIVE QUERY 'id'`.
    KillLiveQuery(String),
    /// `EXPORT USER DATA 'u' TO 'file.zip'`.
    Export {
        /// The user.
        user: String,
        /// The zip file.
        path: String,
    },
    /// `IMPORT USER DATA 'u' FROM 'file.zip'`.
    Import {
        /// The user.
        user: String,
        /// The zip file an export wrote.
        path: String,
    },
    /// `EXECUTE AS USER 'u' (statement)`.
    ExecuteAs {
        /// The user.
        user: String,
        /// The statement.
        inner: Box<Command>,
    },
    /// `CREATE USER [IF NOT EXISTS] name [WITH] PASSWORD '...' [ROLE operator|user]`: a login
    /// of the server.
    CreateUser {
        /// The login name.
        name: String,
        /// The password (hashed into a SCRAM verifier; never stored).
        password: String,
        /// `operator` or `user` (default).
        role: Option<String>,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
    },
    /// `ALTER USER name [WITH] [PASSWORD '...'] [ROLE operator|user]`.
    AlterUser {
        /// The login name.
        name: String,
        /// A new password.
        password: Option<String>,
        /// A new role.
        role: Option<String>,
    },
    /// `DROP USER [IF EXISTS] name`.
    DropUser {
        /// The login name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW USERS`.
    ShowUsers,
    /// `COPY ns.t [(cols)] FROM '<file>' [WITH (FORMAT csv|text, HEADER, DELIMITER 'c', NULL
    /// 's')]`: the file's rows (text, CSV, Parquet or JSON lines) inserted in atomic batches
    /// of 10,000.
    CopyFrom {
        /// `ns.t`.
        table: TableId,
        /// The columns given (empty: all, or for Parquet and JSON the file's).
        columns: Vec<String>,
        /// The file.
        path: String,
        /// How it is read.
        format: FileFormat,
    },
    /// `COPY ns.t | (query) TO '<file>'`: the rows as CSV with a header, Parquet or JSON lines.
    CopyTo {
        /// The query whose rows are written.
        query: String,
        /// The file.
        path: String,
        /// How it is written.
        format: FileFormat,
    },
    /// Any other statement: SQL for DataFusion (queries, INSERT, UPDATE, DELETE, EXPLAIN).
    Sql(String),
}
