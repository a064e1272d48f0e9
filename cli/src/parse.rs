//! kalamstore's own statements (storages, namespaces, tables, ALTER TABLE, maintenance,
//! export, EXECUTE AS USER, SUBSCRIBE and live queries), parsed with DataFusion's `sqlparser` into [`Command`]s; any other
//! statement is SQL for DataFusion ([`Command::Sql`]). Also splits scripts into statements.

use kalamstore::{ConsumerStart, StartAt, TableId};
use kalamstore_sql::SubscribeRequest;
use kalamstore_sql::datafusion::sql::sqlparser;
use sqlparser::ast::{self, Expr, ObjectName, UnaryOperator, Value};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::error::{CliError, invalid};

/// Longest text literal accepted (bytes); larger values belong in a file import, not SQL.
pub const MAX_LITERAL_BYTES: usize = 16 << 20;

/// Parses `namespace.table`.
pub(crate) fn table_id(s: &str) -> Result<TableId, CliError> {
    Ok(s.to_ascii_lowercase().parse::<TableId>()?)
}

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

/// A column of `CREATE TABLE`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSpec {
    /// Name.
    pub name: String,
    /// Type as written.
    pub data_type: String,
    /// `NOT NULL`.
    pub not_null: bool,
    /// `DEFAULT`.
    pub default: Option<Literal>,
    /// `PRIMARY KEY`.
    pub primary_key: bool,
}

/// What `ALTER TABLE` changes.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterAction {
    /// `ADD [COLUMN] c <type> [NOT NULL] [DEFAULT v]`.
    AddColumn(ColumnSpec),
    /// `DROP [COLUMN] c`.
    DropColumn(String),
    /// `RENAME COLUMN a TO b`.
    RenameColumn {
        /// The current name.
        from: String,
        /// The new name.
        to: String,
    },
    /// `MODIFY [COLUMN] c <type>` or `ALTER COLUMN c TYPE <type>`.
    ModifyColumn {
        /// The column.
        name: String,
        /// The new type as written.
        data_type: String,
    },
    /// `SET TBLPROPERTIES (K = v, ...)`, keys upper-cased.
    SetProperties(Vec<(String, Literal)>),
    /// `SET STORAGE <id>`.
    SetStorage(String),
    /// `REPUBLISH`: rebuild the table's Delta log.
    Republish,
}

/// One statement of the dialect.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `CREATE STORAGE`.
    CreateStorage {
        /// Storage id.
        id: String,
        /// `filesystem`, `s3` or `memory`.
        kind: String,
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
        kind: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// `ns.t`.
        table: String,
        /// Columns.
        columns: Vec<ColumnSpec>,
        /// `WITH (K = v, ...)`, keys upper-cased.
        options: Vec<(String, Literal)>,
    },
    /// `ALTER TABLE ns.t <action>`.
    AlterTable {
        /// `ns.t`.
        table: String,
        /// What changes.
        action: AlterAction,
    },
    /// `DROP TABLE`.
    DropTable {
        /// `ns.t`.
        table: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW TABLES [IN ns]`.
    ShowTables(Option<String>),
    /// `DESCRIBE TABLE ns.t`.
    Describe(String),
    /// `STORAGE FLUSH TABLE ns.t [FOR USER 'u']` / `STORAGE FLUSH ALL [IN ns]`.
    Flush {
        /// One table, or all.
        table: Option<String>,
        /// Namespace of `ALL IN ns`.
        namespace: Option<String>,
        /// One user.
        user: Option<String>,
    },
    /// `STORAGE COMPACT TABLE ns.t`.
    Compact(String),
    /// `SHOW MANIFEST FOR ns.t`.
    ShowManifest(String),
    /// `SHOW STATS FOR TABLE ns.t`.
    ShowStats(String),
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
        table: String,
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
        table: String,
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

/// The first words of kalamstore's own statements.
const OWN: &[&str] = &[
    "CREATE",
    "DROP",
    "SHOW",
    "STORAGE",
    "ALTER",
    "DESCRIBE",
    "DESC",
    "KILL",
    "EXPORT",
    "IMPORT",
    "EXECUTE",
    "SUBSCRIBE",
    "CONSUME",
    "ACK",
    "COPY",
];

/// One statement of a script and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    /// The statement text.
    pub sql: String,
    /// 1-based line of its first token.
    pub line: u64,
}

/// Splits a script into statements at top-level `;`, skipping comments and blank statements;
/// quoted strings may contain `;` and `--`. Each statement is the script's own text.
pub fn split(script: &str) -> Result<Vec<Located>, CliError> {
    let (tokens, offset) = tokens(script)?;
    let mut out = Vec::new();
    let mut first: Option<(usize, u64)> = None;
    let mut last_end = 0usize;
    let mut depth = 0i32;
    for t in &tokens {
        match &t.token {
            Token::SemiColon if depth == 0 => {
                if let Some((start, line)) = first.take() {
                    out.push(Located {
                        sql: script[start..last_end].trim().to_owned(),
                        line,
                    });
                }
                continue;
            }
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if first.is_none() {
            first = Some((offset(t.span.start), t.span.start.line));
        }
        last_end = offset(t.span.end);
    }
    if let Some((start, line)) = first {
        out.push(Located {
            sql: script[start..last_end.max(start)].trim().to_owned(),
            line,
        });
    }
    Ok(out)
}

/// The tokens of `script` with their locations, and a way to turn a location into a byte
/// offset of `script`.
fn tokens(
    script: &str,
) -> Result<
    (
        Vec<sqlparser::tokenizer::TokenWithSpan>,
        impl Fn(Location) -> usize + '_,
    ),
    CliError,
> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, script)
        .tokenize_with_location()
        .map_err(|e| CliError::Parse(e.to_string()))?;
    // Byte offset of every line start, to turn (line, column) locations into slices.
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(script.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let offset = move |loc: Location| -> usize {
        let start = line_starts
            .get(loc.line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or(script.len());
        script[start..]
            .char_indices()
            .nth(loc.column.saturating_sub(1) as usize)
            .map_or(script.len(), |(i, _)| start + i)
    };
    Ok((tokens, offset))
}

fn err(e: ParserError) -> CliError {
    CliError::Parse(e.to_string())
}

fn bad(msg: impl Into<String>) -> CliError {
    CliError::Parse(msg.into())
}

/// Parses one statement: one of kalamstore's own, or SQL for DataFusion.
pub fn parse(sql: &str) -> Result<Command, CliError> {
    let (tokens, offset) = tokens(sql)?;
    for t in &tokens {
        if let Token::SingleQuotedString(s) = &t.token
            && s.len() > MAX_LITERAL_BYTES
        {
            return Err(invalid(format!(
                "a {}-byte string literal exceeds the {MAX_LITERAL_BYTES}-byte limit of a \
                 statement's literals",
                s.len(),
            )));
        }
    }
    let mut words = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)));
    let first = match words.next().map(|t| &t.token) {
        Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
        _ => return Ok(Command::Sql(sql.to_owned())),
    };
    if !OWN.contains(&first.as_str()) {
        return Ok(Command::Sql(sql.to_owned()));
    }
    if first == "EXECUTE" {
        return execute_as(sql, &tokens, &offset);
    }
    if first == "COPY" {
        return copy(sql);
    }
    let dialect = GenericDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(err)?;
    let command = parse_command(&mut p)?;
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token().token != Token::EOF {
        return Err(bad(format!(
            "unexpected `{}` after the end of the statement",
            p.peek_token().token
        )));
    }
    Ok(command)
}

/// The rest of `SUBSCRIBE TO ...`. The start follows KalamDB: `from_seq_id` (changes after
/// it, no initial data) over `last_rows` (the newest N rows; 0: none) over all matching rows.
fn subscribe(p: &mut Parser<'_>) -> Result<Command, CliError> {
    p.expect_keyword(Keyword::TO).map_err(err)?;
    let table = object(p)?;
    let all_users = p.parse_keywords(&[Keyword::FOR, Keyword::ALL]);
    if all_users {
        expect_word(p, "USERS")?;
    }
    let condition = if p.parse_keyword(Keyword::WHERE) {
        Some(p.parse_expr().map_err(err)?.to_string())
    } else {
        None
    };
    let mut request = SubscribeRequest {
        table,
        condition,
        all_users,
        start: StartAt::Snapshot,
        batch_size: None,
    };
    if ident_word(p, "OPTIONS") {
        p.next_token();
        let mut from_seq = None;
        let mut last_rows = None;
        for (key, value) in properties(p)? {
            let n = match &value {
                Literal::Number(n) => n.parse::<u64>().ok(),
                _ => None,
            }
            .ok_or_else(|| invalid(format!("{key} needs a whole number >= 0")))?;
            let n_usize = usize::try_from(n).unwrap_or(usize::MAX);
            match key.as_str() {
                "FROM_SEQ_ID" => from_seq = Some(i64::try_from(n).unwrap_or(i64::MAX)),
                "LAST_ROWS" => last_rows = Some(n_usize),
                "BATCH_SIZE" if n > 0 => request.batch_size = Some(n_usize),
                other => {
                    return Err(invalid(format!(
                        "unknown SUBSCRIBE option `{other}` (LAST_ROWS, FROM_SEQ_ID, \
                         BATCH_SIZE > 0)"
                    )));
                }
            }
        }
        request.start = match (from_seq, last_rows) {
            (Some(seq), _) => StartAt::After(seq),
            (None, Some(0)) => StartAt::Now,
            (None, Some(n)) => StartAt::LastRows(n),
            (None, None) => StartAt::Snapshot,
        };
    }
    Ok(Command::Subscribe(request))
}

/// The rest of `CREATE CONSUMER ...`.
fn create_consumer(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let consumer = name(p)?;
    p.expect_keyword(Keyword::ON).map_err(err)?;
    let table = object(p)?;
    let all_users = p.parse_keywords(&[Keyword::FOR, Keyword::ALL]);
    if all_users {
        expect_word(p, "USERS")?;
    }
    let start = if p.parse_keyword(Keyword::FROM) {
        if ident_word(p, "EARLIEST") {
            p.next_token();
            ConsumerStart::Earliest
        } else {
            ConsumerStart::After(i64::try_from(whole_number(p, "FROM")?).unwrap_or(i64::MAX))
        }
    } else {
        ConsumerStart::Now
    };
    Ok(Command::CreateConsumer {
        name: consumer,
        table,
        all_users,
        start,
    })
}

/// A whole number >= 0 literal.
fn whole_number(p: &mut Parser<'_>, what: &str) -> Result<u64, CliError> {
    match literal(&p.parse_expr().map_err(err)?)? {
        Literal::Number(n) => n.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| invalid(format!("{what} needs a whole number >= 0")))
}

fn ident_word(p: &Parser<'_>, word: &str) -> bool {
    matches!(&p.peek_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case(word))
}

fn expect_word(p: &mut Parser<'_>, word: &str) -> Result<(), CliError> {
    if ident_word(p, word) {
        p.next_token();
        Ok(())
    } else {
        Err(bad(format!(
            "expected {word}, found `{}`",
            p.peek_token().token
        )))
    }
}

fn name(p: &mut Parser<'_>) -> Result<String, CliError> {
    Ok(p.parse_identifier().map_err(err)?.value)
}

fn object(p: &mut Parser<'_>) -> Result<String, CliError> {
    Ok(object_name(&p.parse_object_name(false).map_err(err)?))
}

fn object_name(n: &ObjectName) -> String {
    n.0.iter()
        .map(|part| match part.as_ident() {
            Some(i) => i.value.clone(),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn string(p: &mut Parser<'_>) -> Result<String, CliError> {
    p.parse_literal_string().map_err(err)
}

/// How a COPY file is read or written.
#[derive(Debug, Clone, PartialEq)]
pub enum FileFormat {
    /// Text or CSV lines, as the COPY options say (CSV for a `.csv` file without FORMAT).
    Delimited(kalamstore_server::copy::CopyFormat),
    /// Apache Parquet (a `.parquet` file): columns by name, typed.
    Parquet,
    /// One JSON object per line (a `.json`, `.jsonl` or `.ndjson` file): fields by name.
    Json,
}

impl FileFormat {
    /// The format of `path`: by its extension, else the COPY options'.
    fn of(path: &str, options: kalamstore_server::copy::CopyFormat) -> Self {
        use kalamstore_server::copy::CopyFormat;
        let lower = path.to_ascii_lowercase();
        let extension = lower.rsplit_once('.').map_or("", |(_, e)| e);
        match extension {
            "parquet" => Self::Parquet,
            "json" | "jsonl" | "ndjson" => Self::Json,
            "csv" if options == CopyFormat::text() => Self::Delimited(CopyFormat::csv(false)),
            _ => Self::Delimited(options),
        }
    }
}

/// `COPY ... FROM|TO '<file>'`; the STDIN/STDOUT forms belong to a client connection.
fn copy(sql: &str) -> Result<Command, CliError> {
    use kalamstore_server::copy::{CopyStatement, parse_copy_file};
    match parse_copy_file(sql).map_err(|e| CliError::Parse(e.message))? {
        Some((
            CopyStatement::In {
                table,
                columns,
                format,
            },
            path,
        )) => Ok(Command::CopyFrom {
            table,
            columns,
            format: FileFormat::of(&path, format),
            path,
        }),
        Some((CopyStatement::Out { query, format }, path)) => Ok(Command::CopyTo {
            query,
            format: FileFormat::of(&path, format),
            path,
        }),
        None => Err(bad(
            "COPY ... FROM STDIN / TO STDOUT needs a client connection (psql's \\copy, or the \
             server); here, COPY a file",
        )),
    }
}

/// `[WITH] [PASSWORD '...'] [ROLE operator|user]`, in either order.
fn user_options(p: &mut Parser<'_>) -> Result<(Option<String>, Option<String>), CliError> {
    let _ = p.parse_keyword(Keyword::WITH);
    let (mut password, mut role) = (None, None);
    loop {
        if p.parse_keyword(Keyword::PASSWORD) {
            password = Some(string(p)?);
        } else if p.parse_keyword(Keyword::ROLE) {
            role = Some(name(p)?.to_ascii_lowercase());
        } else {
            return Ok((password, role));
        }
    }
}

fn parse_command(p: &mut Parser<'_>) -> Result<Command, CliError> {
    if p.parse_keyword(Keyword::CREATE) {
        if ident_word(p, "CONSUMER") {
            p.next_token();
            return create_consumer(p);
        }
        if ident_word(p, "STORAGE") {
            p.next_token();
            return create_storage(p);
        }
        if ident_word(p, "USER")
            && !matches!(&p.peek_nth_token(1).token, Token::Word(w) if w.value.eq_ignore_ascii_case("TABLE"))
        {
            p.next_token();
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = name(p)?;
            let (password, role) = user_options(p)?;
            let password = password.ok_or_else(|| bad("CREATE USER needs PASSWORD '...'"))?;
            return Ok(Command::CreateUser {
                name,
                password,
                role,
                if_not_exists,
            });
        }
        if ident_word(p, "NAMESPACE") || p.parse_keyword(Keyword::SCHEMA) {
            if ident_word(p, "NAMESPACE") {
                p.next_token();
            }
            let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            return Ok(Command::CreateNamespace {
                name: name(p)?,
                if_not_exists,
            });
        }
        if !["USER", "SHARED", "STREAM", "TABLE"]
            .iter()
            .any(|k| ident_word(p, k))
        {
            return Err(bad(format!(
                "CREATE {} is not supported (CREATE NAMESPACE, [USER|SHARED|STREAM] TABLE or \
                 STORAGE)",
                p.peek_token().token
            )));
        }
        let mut kind = "SHARED".to_owned();
        for k in ["USER", "SHARED", "STREAM"] {
            if ident_word(p, k) {
                p.next_token();
                kind = k.to_owned();
            }
        }
        p.expect_keyword(Keyword::TABLE).map_err(err)?;
        return create_table(p, kind);
    }
    if p.parse_keyword(Keyword::DROP) {
        if p.parse_keyword(Keyword::USER) {
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            return Ok(Command::DropUser {
                name: name(p)?,
                if_exists,
            });
        }
        if ident_word(p, "CONSUMER") {
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            return Ok(Command::DropConsumer {
                name: name(p)?,
                if_exists,
            });
        }
        if ident_word(p, "STORAGE") {
            p.next_token();
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            return Ok(Command::DropStorage {
                id: name(p)?,
                if_exists,
            });
        }
        if ident_word(p, "NAMESPACE") || p.parse_keyword(Keyword::SCHEMA) {
            if ident_word(p, "NAMESPACE") {
                p.next_token();
            }
            let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let n = name(p)?;
            let cascade = p.parse_keyword(Keyword::CASCADE);
            return Ok(Command::DropNamespace {
                name: n,
                if_exists,
                cascade,
            });
        }
        if !ident_word(p, "TABLE") {
            return Err(bad(format!(
                "DROP {} is not supported (DROP NAMESPACE, TABLE or STORAGE)",
                p.peek_token().token
            )));
        }
        p.next_token();
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        return Ok(Command::DropTable {
            table: object(p)?,
            if_exists,
        });
    }
    if p.parse_keyword(Keyword::SHOW) {
        if ident_word(p, "STORAGES") {
            p.next_token();
            return Ok(Command::ShowStorages);
        }
        if ident_word(p, "NAMESPACES") {
            p.next_token();
            return Ok(Command::ShowNamespaces);
        }
        if p.parse_keyword(Keyword::TABLES) {
            let ns = if p.parse_keyword(Keyword::IN) || p.parse_keyword(Keyword::FROM) {
                Some(name(p)?)
            } else {
                None
            };
            return Ok(Command::ShowTables(ns));
        }
        if ident_word(p, "MANIFEST") {
            p.next_token();
            p.expect_keyword(Keyword::FOR).map_err(err)?;
            let _ = p.parse_keyword(Keyword::TABLE);
            return Ok(Command::ShowManifest(object(p)?));
        }
        if ident_word(p, "LIVE") {
            p.next_token();
            expect_word(p, "QUERIES")?;
            return Ok(Command::ShowLiveQueries);
        }
        if ident_word(p, "CONSUMERS") {
            p.next_token();
            return Ok(Command::ShowConsumers);
        }
        if ident_word(p, "USERS") {
            p.next_token();
            return Ok(Command::ShowUsers);
        }
        if ident_word(p, "STATS") {
            p.next_token();
            if !p.parse_keyword(Keyword::FOR) {
                return Ok(Command::ShowCacheStats);
            }
            let _ = p.parse_keyword(Keyword::TABLE);
            return Ok(Command::ShowStats(object(p)?));
        }
        return Err(bad(format!(
            "unknown SHOW `{}` (STORAGES, NAMESPACES, TABLES, MANIFEST FOR, STATS [FOR TABLE], \
             LIVE QUERIES, CONSUMERS, USERS)",
            p.peek_token().token
        )));
    }
    if ident_word(p, "STORAGE") {
        p.next_token();
        if ident_word(p, "CHECK") {
            p.next_token();
            return Ok(Command::StorageCheck(name(p)?));
        }
        if ident_word(p, "FLUSH") {
            p.next_token();
            if p.parse_keyword(Keyword::ALL) {
                let namespace = if p.parse_keyword(Keyword::IN) {
                    Some(name(p)?)
                } else {
                    None
                };
                return Ok(Command::Flush {
                    table: None,
                    namespace,
                    user: None,
                });
            }
            p.expect_keyword(Keyword::TABLE).map_err(err)?;
            let table = object(p)?;
            let user = if p.parse_keywords(&[Keyword::FOR, Keyword::USER]) {
                Some(string(p)?)
            } else {
                None
            };
            return Ok(Command::Flush {
                table: Some(table),
                namespace: None,
                user,
            });
        }
        if ident_word(p, "COMPACT") {
            p.next_token();
            p.expect_keyword(Keyword::TABLE).map_err(err)?;
            return Ok(Command::Compact(object(p)?));
        }
        return Err(bad(
            "expected STORAGE CHECK, STORAGE FLUSH or STORAGE COMPACT",
        ));
    }
    if p.parse_keyword(Keyword::ALTER) {
        if p.parse_keyword(Keyword::USER) {
            let name = name(p)?;
            let (password, role) = user_options(p)?;
            if password.is_none() && role.is_none() {
                return Err(bad("ALTER USER needs PASSWORD '...' or ROLE"));
            }
            return Ok(Command::AlterUser {
                name,
                password,
                role,
            });
        }
        p.expect_keyword(Keyword::TABLE).map_err(err)?;
        let table = object(p)?;
        return Ok(Command::AlterTable {
            table,
            action: alter_action(p)?,
        });
    }
    if p.parse_keyword(Keyword::DESCRIBE) || p.parse_keyword(Keyword::DESC) {
        let _ = p.parse_keyword(Keyword::TABLE);
        return Ok(Command::Describe(object(p)?));
    }
    if p.parse_keyword(Keyword::KILL) {
        if ident_word(p, "LIVE") {
            p.next_token();
            expect_word(p, "QUERY")?;
            return Ok(Command::KillLiveQuery(string(p)?));
        }
        expect_word(p, "JOB")?;
        return Ok(Command::KillJob(string(p)?));
    }
    if ident_word(p, "SUBSCRIBE") {
        p.next_token();
        return subscribe(p);
    }
    if ident_word(p, "CONSUME") {
        p.next_token();
        p.expect_keyword(Keyword::FROM).map_err(err)?;
        let consumer = name(p)?;
        let limit = if p.parse_keyword(Keyword::LIMIT) {
            Some(whole_number(p, "LIMIT")?)
        } else {
            None
        };
        return Ok(Command::Consume {
            name: consumer,
            limit: limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        });
    }
    if ident_word(p, "ACK") {
        p.next_token();
        let consumer = name(p)?;
        expect_word(p, "UPTO")?;
        let seq = whole_number(p, "UPTO")?;
        return Ok(Command::Ack {
            name: consumer,
            seq: i64::try_from(seq).unwrap_or(i64::MAX),
        });
    }
    if p.parse_keyword(Keyword::EXPORT) {
        p.expect_keyword(Keyword::USER).map_err(err)?;
        expect_word(p, "DATA")?;
        let user = string(p)?;
        p.expect_keyword(Keyword::TO).map_err(err)?;
        return Ok(Command::Export {
            user,
            path: string(p)?,
        });
    }
    if p.parse_keyword(Keyword::IMPORT) {
        p.expect_keyword(Keyword::USER).map_err(err)?;
        expect_word(p, "DATA")?;
        let user = string(p)?;
        p.expect_keyword(Keyword::FROM).map_err(err)?;
        return Ok(Command::Import {
            user,
            path: string(p)?,
        });
    }
    Err(bad(format!("unknown statement `{}`", p.peek_token().token)))
}

/// `EXECUTE AS USER '<id>' (<statement>)`: the inner statement is the text between the
/// first `(` and the last `)`.
fn execute_as(
    sql: &str,
    tokens: &[sqlparser::tokenizer::TokenWithSpan],
    offset: &impl Fn(Location) -> usize,
) -> Result<Command, CliError> {
    let usage = || bad("expected EXECUTE AS USER '<id>' (<statement>)");
    let words: Vec<&sqlparser::tokenizer::TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let keyword = |i: usize, k: &str| matches!(words.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case(k));
    if !(keyword(0, "EXECUTE") && keyword(1, "AS") && keyword(2, "USER")) {
        return Err(usage());
    }
    let user = match words.get(3).map(|t| &t.token) {
        Some(Token::SingleQuotedString(u)) => u.clone(),
        _ => return Err(usage()),
    };
    let (Some(open), Some(close)) = (words.get(4), words.last()) else {
        return Err(usage());
    };
    if open.token != Token::LParen || close.token != Token::RParen || words.len() < 7 {
        return Err(usage());
    }
    let inner = parse(sql[offset(open.span.end)..offset(close.span.start)].trim())?;
    if matches!(inner, Command::ExecuteAs { .. }) {
        return Err(bad("EXECUTE AS cannot be nested"));
    }
    Ok(Command::ExecuteAs {
        user,
        inner: Box::new(inner),
    })
}

fn create_storage(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let id = name(p)?;
    let mut kind = None;
    let mut path = None;
    let mut engine = None;
    let mut cache = None;
    let mut metadata_cache = None;
    let mut config = None;
    loop {
        if p.parse_keyword(Keyword::TYPE) {
            kind = Some(name(p)?.to_ascii_lowercase());
        } else if p.parse_keyword(Keyword::PATH) || ident_word(p, "BASE_DIRECTORY") {
            if ident_word(p, "BASE_DIRECTORY") {
                p.next_token();
            }
            path = Some(string(p)?);
        } else if p.parse_keyword(Keyword::ENGINE) {
            engine = Some(name(p)?.to_ascii_lowercase());
        } else if p.parse_keyword(Keyword::CACHE) {
            p.expect_token(&Token::LParen).map_err(err)?;
            let mut memory = None;
            let mut disk = None;
            loop {
                if ident_word(p, "MEMORY") {
                    p.next_token();
                    memory = Some(string(p)?);
                } else if ident_word(p, "DISK") {
                    p.next_token();
                    disk = Some(string(p)?);
                } else {
                    return Err(bad("CACHE takes (MEMORY '<size>', DISK '<size>')"));
                }
                if !p.consume_token(&Token::Comma) {
                    break;
                }
            }
            p.expect_token(&Token::RParen).map_err(err)?;
            cache = Some((
                memory.ok_or_else(|| bad("CACHE needs MEMORY '<size>'"))?,
                disk,
            ));
        } else if ident_word(p, "METADATA") {
            p.next_token();
            if !p.parse_keyword(Keyword::CACHE) {
                return Err(bad("expected METADATA CACHE '<size>'"));
            }
            metadata_cache = Some(string(p)?);
        } else if ident_word(p, "CONFIG") {
            p.next_token();
            config = Some(string(p)?);
        } else {
            break;
        }
    }
    Ok(Command::CreateStorage {
        id,
        kind: kind.ok_or_else(|| bad("CREATE STORAGE needs TYPE filesystem|s3|memory"))?,
        path,
        engine,
        cache,
        metadata_cache,
        config,
    })
}

fn column_spec(c: ast::ColumnDef) -> Result<ColumnSpec, CliError> {
    let mut spec = ColumnSpec {
        name: c.name.value.clone(),
        data_type: c.data_type.to_string(),
        not_null: false,
        default: None,
        primary_key: false,
    };
    for o in c.options {
        match o.option {
            ast::ColumnOption::NotNull => spec.not_null = true,
            ast::ColumnOption::Null => {}
            ast::ColumnOption::Default(e) => spec.default = Some(literal(&e)?),
            ast::ColumnOption::PrimaryKey(_) => spec.primary_key = true,
            other => return Err(bad(format!("column option `{other}` is not supported"))),
        }
    }
    Ok(spec)
}

/// `K = v, ...` inside parentheses, keys upper-cased.
fn properties(p: &mut Parser<'_>) -> Result<Vec<(String, Literal)>, CliError> {
    p.expect_token(&Token::LParen).map_err(err)?;
    let mut out = Vec::new();
    loop {
        let key = name(p)?.to_ascii_uppercase();
        p.expect_token(&Token::Eq).map_err(err)?;
        let value = literal(&p.parse_expr().map_err(err)?)?;
        out.push((key, value));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen).map_err(err)?;
    Ok(out)
}

fn alter_action(p: &mut Parser<'_>) -> Result<AlterAction, CliError> {
    let column_type = |p: &mut Parser<'_>| -> Result<String, CliError> {
        Ok(p.parse_data_type().map_err(err)?.to_string())
    };
    if p.parse_keyword(Keyword::ADD) {
        let _ = p.parse_keyword(Keyword::COLUMN);
        return Ok(AlterAction::AddColumn(column_spec(
            p.parse_column_def().map_err(err)?,
        )?));
    }
    if p.parse_keyword(Keyword::DROP) {
        let _ = p.parse_keyword(Keyword::COLUMN);
        return Ok(AlterAction::DropColumn(name(p)?));
    }
    if p.parse_keyword(Keyword::RENAME) {
        p.expect_keyword(Keyword::COLUMN).map_err(err)?;
        let from = name(p)?;
        p.expect_keyword(Keyword::TO).map_err(err)?;
        return Ok(AlterAction::RenameColumn { from, to: name(p)? });
    }
    if ident_word(p, "MODIFY") {
        p.next_token();
        let _ = p.parse_keyword(Keyword::COLUMN);
        let name = name(p)?;
        return Ok(AlterAction::ModifyColumn {
            name,
            data_type: column_type(p)?,
        });
    }
    if p.parse_keyword(Keyword::ALTER) {
        let _ = p.parse_keyword(Keyword::COLUMN);
        let name = name(p)?;
        let _ = p.parse_keywords(&[Keyword::SET, Keyword::DATA]);
        p.expect_keyword(Keyword::TYPE).map_err(err)?;
        return Ok(AlterAction::ModifyColumn {
            name,
            data_type: column_type(p)?,
        });
    }
    if ident_word(p, "REPUBLISH") {
        p.next_token();
        return Ok(AlterAction::Republish);
    }
    if p.parse_keyword(Keyword::SET) {
        if ident_word(p, "TBLPROPERTIES") {
            p.next_token();
            return Ok(AlterAction::SetProperties(properties(p)?));
        }
        if ident_word(p, "STORAGE") {
            p.next_token();
            return Ok(AlterAction::SetStorage(name(p)?));
        }
    }
    Err(bad(format!(
        "expected ADD COLUMN, DROP COLUMN, RENAME COLUMN, MODIFY COLUMN, SET TBLPROPERTIES, \
         SET STORAGE or REPUBLISH, found `{}`",
        p.peek_token().token
    )))
}

fn create_table(p: &mut Parser<'_>, kind: String) -> Result<Command, CliError> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let table = object(p)?;
    let (defs, constraints) = p.parse_columns().map_err(err)?;
    let columns = defs
        .into_iter()
        .map(column_spec)
        .collect::<Result<Vec<_>, _>>()?;
    let mut columns = columns;
    for c in constraints {
        match c {
            ast::TableConstraint::PrimaryKey(pk) => {
                for col in pk.columns {
                    let n = col.column.expr.to_string();
                    let spec = columns
                        .iter_mut()
                        .find(|s| s.name == n)
                        .ok_or_else(|| bad(format!("PRIMARY KEY names unknown column `{n}`")))?;
                    spec.primary_key = true;
                }
            }
            other => return Err(bad(format!("constraint `{other}` is not supported"))),
        }
    }
    let mut options = Vec::new();
    if p.parse_keyword(Keyword::WITH) {
        options = properties(p)?;
    }
    if ident_word(p, "STORAGE") {
        p.next_token();
        options.push(("STORAGE_ID".into(), Literal::String(name(p)?)));
    }
    Ok(Command::CreateTable {
        kind,
        if_not_exists,
        table,
        columns,
        options,
    })
}

/// A literal expression: number, string, boolean, NULL, `-number` or `$n`.
pub fn literal(e: &Expr) -> Result<Literal, CliError> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::Null => Ok(Literal::Null),
            Value::Boolean(b) => Ok(Literal::Bool(*b)),
            Value::Number(n, _) => Ok(Literal::Number(n.clone())),
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                Ok(Literal::String(s.clone()))
            }
            Value::Placeholder(s) => s
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .map(Literal::Placeholder)
                .ok_or_else(|| bad(format!("placeholder `{s}` is not $1, $2, ..."))),
            other => Err(bad(format!("`{other}` is not a supported literal"))),
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match literal(expr)? {
            Literal::Number(n) => Ok(Literal::Number(format!("-{n}"))),
            _ => Err(bad(format!("`{e}` is not a literal"))),
        },
        Expr::Nested(inner) => literal(inner),
        other => Err(bad(format!("`{other}` is not a literal"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_statements_parse_beside_create_user_table() {
        assert!(matches!(
            parse("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY)").unwrap(),
            Command::CreateTable { kind, .. } if kind == "USER"
        ));
        match parse("CREATE USER IF NOT EXISTS alice WITH PASSWORD 'p''w' ROLE Operator").unwrap() {
            Command::CreateUser {
                name,
                password,
                role,
                if_not_exists,
            } => {
                assert_eq!((name.as_str(), password.as_str()), ("alice", "p'w"));
                assert_eq!(role.as_deref(), Some("operator"));
                assert!(if_not_exists);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("ALTER USER alice ROLE user").unwrap(),
            Command::AlterUser { password: None, role: Some(r), .. } if r == "user"
        ));
        assert!(matches!(
            parse("DROP USER IF EXISTS alice").unwrap(),
            Command::DropUser {
                if_exists: true,
                ..
            }
        ));
        assert!(
            parse("CREATE USER alice").is_err(),
            "a password is required"
        );
        assert!(parse("ALTER USER alice").is_err(), "something must change");
    }

    #[test]
    fn scripts_split_at_top_level_semicolons_with_lines() {
        let script = "-- a comment; with a semicolon\nCREATE NAMESPACE app;\n\n\
                      INSERT INTO app.t VALUES ('a;b -- not a comment');\n;\nSELECT 1";
        let parts = split(script).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].line, 2);
        assert_eq!(parts[1].line, 4);
        assert!(parts[1].sql.contains("'a;b -- not a comment'"));
        assert_eq!(parts[2].line, 6);
    }

    #[test]
    fn custom_statements_parse() {
        assert_eq!(
            parse("STORAGE FLUSH TABLE app.t FOR USER 'alice'").unwrap(),
            Command::Flush {
                table: Some("app.t".into()),
                namespace: None,
                user: Some("alice".into())
            }
        );
        assert!(matches!(
            parse("CREATE USER TABLE IF NOT EXISTS app.m (id BIGINT PRIMARY KEY, body TEXT NOT NULL DEFAULT 'x') WITH (FLUSH_POLICY = 'rows:10')").unwrap(),
            Command::CreateTable { ref kind, if_not_exists: true, ref columns, .. } if kind == "USER" && columns.len() == 2
        ));
        assert!(matches!(
            parse(
                "EXECUTE AS USER 'bob' (SELECT * FROM app.m WHERE id > 3 ORDER BY id DESC LIMIT 2)"
            )
            .unwrap(),
            Command::ExecuteAs { .. }
        ));
        assert!(matches!(
            parse("CREATE STORAGE s3c TYPE s3 PATH 's3://b/p' ENGINE rocksdb CACHE (MEMORY '64MB', DISK '1GB') CONFIG '{}'").unwrap(),
            Command::CreateStorage { .. }
        ));
        assert!(matches!(
            parse("CREATE STORAGE m TYPE memory METADATA CACHE '8MB'").unwrap(),
            Command::CreateStorage { metadata_cache: Some(ref size), .. } if size == "8MB"
        ));
        assert!(parse("CREATE STORAGE m TYPE memory METADATA '8MB'").is_err());
        let alter = |sql: &str| match parse(sql).unwrap() {
            Command::AlterTable { table, action } if table == "app.m" => action,
            other => panic!("{sql}: {other:?}"),
        };
        assert!(matches!(
            alter("ALTER TABLE app.m ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'"),
            AlterAction::AddColumn(ColumnSpec { ref name, not_null: true, default: Some(_), .. }) if name == "tag"
        ));
        assert_eq!(
            alter("ALTER TABLE app.m DROP COLUMN tag"),
            AlterAction::DropColumn("tag".into())
        );
        assert_eq!(
            alter("ALTER TABLE app.m RENAME COLUMN a TO b"),
            AlterAction::RenameColumn {
                from: "a".into(),
                to: "b".into()
            }
        );
        for sql in [
            "ALTER TABLE app.m MODIFY COLUMN n BIGINT",
            "ALTER TABLE app.m ALTER COLUMN n TYPE BIGINT",
        ] {
            assert_eq!(
                alter(sql),
                AlterAction::ModifyColumn {
                    name: "n".into(),
                    data_type: "BIGINT".into()
                }
            );
        }
        assert_eq!(
            alter("ALTER TABLE app.m SET TBLPROPERTIES (STORAGE_ID = 's3', TTL_SECONDS = 60)"),
            AlterAction::SetProperties(vec![
                ("STORAGE_ID".into(), Literal::String("s3".into())),
                ("TTL_SECONDS".into(), Literal::Number("60".into())),
            ])
        );
        assert_eq!(
            alter("ALTER TABLE app.m SET STORAGE s3"),
            AlterAction::SetStorage("s3".into())
        );
        assert_eq!(alter("ALTER TABLE app.m REPUBLISH"), AlterAction::Republish);
        assert!(parse("ALTER TABLE app.m TRUNCATE").is_err());
        assert!(parse("ALTER TABLE app.m SET TBLPROPERTIES ()").is_err());
        // Everything else is SQL for DataFusion, which judges it.
        for sql in [
            "SELECT * FROM app.m WHERE body LIKE 'x%'",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ] {
            assert_eq!(parse(sql).unwrap(), Command::Sql(sql.into()));
        }
        assert!(parse("INSERT INTO app.m VALUES ('unterminated)").is_err());
        let Command::ExecuteAs { user, inner } =
            parse("EXECUTE AS USER 'bob' (UPDATE app.m SET n = (SELECT 1) WHERE id = 2);").unwrap()
        else {
            panic!("EXECUTE AS")
        };
        assert_eq!(user, "bob");
        assert_eq!(
            *inner,
            Command::Sql("UPDATE app.m SET n = (SELECT 1) WHERE id = 2".into())
        );
        assert!(parse("EXECUTE AS USER 'a' (EXECUTE AS USER 'b' (SELECT 1))").is_err());
    }

    #[test]
    fn subscriptions_and_live_queries_parse() {
        let sub = |sql: &str| match parse(sql).unwrap() {
            Command::Subscribe(r) => r,
            other => panic!("{other:?}"),
        };
        let r = sub("SUBSCRIBE TO app.m");
        assert_eq!(
            (r.table.as_str(), r.condition, r.all_users, r.start),
            ("app.m", None, false, StartAt::Snapshot)
        );
        let r = sub(
            "SUBSCRIBE TO app.m FOR ALL USERS WHERE room = 'r1' AND n > 2 \
             OPTIONS (last_rows = 5, batch_size = 10)",
        );
        assert!(r.all_users);
        assert_eq!(r.condition.as_deref(), Some("room = 'r1' AND n > 2"));
        assert_eq!((r.start, r.batch_size), (StartAt::LastRows(5), Some(10)));
        // `from_seq_id` wins over `last_rows`; `last_rows = 0` is no initial data.
        let r = sub("SUBSCRIBE TO app.m OPTIONS (last_rows = 5, from_seq_id = 42)");
        assert_eq!(r.start, StartAt::After(42));
        assert_eq!(
            sub("SUBSCRIBE TO app.m OPTIONS (last_rows = 0)").start,
            StartAt::Now
        );
        for bad in [
            "SUBSCRIBE app.m",
            "SUBSCRIBE TO app.m FOR ALL",
            "SUBSCRIBE TO app.m OPTIONS (batch_size = 0)",
            "SUBSCRIBE TO app.m OPTIONS (last_rows = 'x')",
            "SUBSCRIBE TO app.m OPTIONS (last_rows = -1)",
            "SUBSCRIBE TO app.m WHERE",
            "KILL LIVE 'x'",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse("SHOW LIVE QUERIES").unwrap(),
            Command::ShowLiveQueries
        );
        assert_eq!(
            parse("KILL LIVE QUERY 'lq-1-2'").unwrap(),
            Command::KillLiveQuery("lq-1-2".into())
        );
    }
}
