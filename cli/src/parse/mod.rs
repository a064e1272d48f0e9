//! kalamstore's own statements, parsed with DataFusion's `sqlparser` into [`Command`]s; any
//! other statement is SQL for DataFusion ([`Command::Sql`]). Also splits scripts into
//! statements. Each statement family has its file: namespaces and tables (`tables.rs`),
//! storages and maintenance (`storages.rs`), logins and user data (`users.rs`), the change
//! feed (`feed.rs`), file COPY (`copy.rs`); this file holds the commands, the dispatch by first
//! word and the shared pieces (names, literals, properties).

mod command;
mod copy;
mod feed;
mod storages;
mod tables;
mod users;

use kalamstore::TableId;
use kalamstore_sql::datafusion::sql::sqlparser;
use sqlparser::ast::{Expr, ObjectName, UnaryOperator, Value};
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Token, Tokenizer};

use crate::error::{CliError, invalid};

pub use command::{Command, Literal};
pub use copy::FileFormat;
pub use storages::StorageKind;
pub use tables::{AlterAction, ColumnSpec};

/// Longest text literal accepted (bytes); larger values belong in a file import, not SQL.
pub const MAX_LITERAL_BYTES: usize = 16 << 20;

/// Parses `namespace.table`.
pub(crate) fn table_id(s: &str) -> Result<TableId, CliError> {
    Ok(s.to_ascii_lowercase().parse::<TableId>()?)
}

/// The parser of a statement family, called after the statement's first word.
type Family = fn(&mut Parser<'_>) -> Result<Command, CliError>;

/// The first words of kalamstore's own statements and what parses the rest (`EXECUTE AS` and
/// `COPY` are split off before: their inner text is not parsed here).
const STATEMENTS: &[(&str, Family)] = &[
    ("CREATE", create),
    ("DROP", drop),
    ("SHOW", show),
    ("STORAGE", storages::storage),
    ("ALTER", alter),
    ("DESCRIBE", tables::describe),
    ("DESC", tables::describe),
    ("KILL", kill),
    ("SUBSCRIBE", feed::subscribe),
    ("CONSUME", feed::consume),
    ("ACK", feed::ack),
    ("EXPORT", users::export),
    ("IMPORT", users::import),
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
    match first.as_str() {
        "EXECUTE" => return users::execute_as(sql, &tokens, &offset),
        "COPY" => return copy::copy(sql),
        _ => {}
    }
    let Some((_, family)) = STATEMENTS.iter().find(|(word, _)| *word == first) else {
        return Ok(Command::Sql(sql.to_owned()));
    };
    let dialect = GenericDialect {};
    let mut p = Parser::new(&dialect).try_with_sql(sql).map_err(err)?;
    p.next_token();
    let command = family(&mut p)?;
    let _ = p.consume_token(&Token::SemiColon);
    if p.peek_token().token != Token::EOF {
        return Err(bad(format!(
            "unexpected `{}` after the end of the statement",
            p.peek_token().token
        )));
    }
    Ok(command)
}

/// `CREATE CONSUMER | STORAGE | USER | NAMESPACE | [USER|SHARED|STREAM] TABLE ...`.
fn create(p: &mut Parser<'_>) -> Result<Command, CliError> {
    if next_word(p, "CONSUMER") {
        return feed::create_consumer(p);
    }
    if next_word(p, "STORAGE") {
        return storages::create_storage(p);
    }
    let user_table = matches!(&p.peek_nth_token(1).token,
        Token::Word(w) if w.value.eq_ignore_ascii_case("TABLE"));
    if ident_word(p, "USER") && !user_table {
        p.next_token();
        return users::create_user(p);
    }
    if next_word(p, "NAMESPACE") || p.parse_keyword(Keyword::SCHEMA) {
        return tables::create_namespace(p);
    }
    tables::create_table(p)
}

/// `DROP USER | CONSUMER | STORAGE | NAMESPACE | TABLE ...`.
fn drop(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let if_exists = |p: &mut Parser<'_>| p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    if p.parse_keyword(Keyword::USER) {
        let if_exists = if_exists(p);
        return Ok(Command::DropUser {
            name: name(p)?,
            if_exists,
        });
    }
    if next_word(p, "CONSUMER") {
        let if_exists = if_exists(p);
        return Ok(Command::DropConsumer {
            name: name(p)?,
            if_exists,
        });
    }
    if next_word(p, "STORAGE") {
        let if_exists = if_exists(p);
        return Ok(Command::DropStorage {
            id: name(p)?,
            if_exists,
        });
    }
    if next_word(p, "NAMESPACE") || p.parse_keyword(Keyword::SCHEMA) {
        let if_exists = if_exists(p);
        let n = name(p)?;
        let cascade = p.parse_keyword(Keyword::CASCADE);
        return Ok(Command::DropNamespace {
            name: n,
            if_exists,
            cascade,
        });
    }
    if !next_word(p, "TABLE") {
        return Err(bad(format!(
            "DROP {} is not supported (DROP NAMESPACE, TABLE or STORAGE)",
            p.peek_token().token
        )));
    }
    let if_exists = if_exists(p);
    Ok(Command::DropTable {
        table: table(p)?,
        if_exists,
    })
}

/// `SHOW STORAGES | NAMESPACES | TABLES | MANIFEST FOR | STATS | LIVE QUERIES | CONSUMERS |
/// USERS`.
fn show(p: &mut Parser<'_>) -> Result<Command, CliError> {
    const PLAIN: &[(&str, Command)] = &[
        ("STORAGES", Command::ShowStorages),
        ("NAMESPACES", Command::ShowNamespaces),
        ("CONSUMERS", Command::ShowConsumers),
        ("USERS", Command::ShowUsers),
    ];
    for (word, command) in PLAIN {
        if next_word(p, word) {
            return Ok(command.clone());
        }
    }
    if p.parse_keyword(Keyword::TABLES) {
        let ns = if p.parse_keyword(Keyword::IN) || p.parse_keyword(Keyword::FROM) {
            Some(name(p)?)
        } else {
            None
        };
        return Ok(Command::ShowTables(ns));
    }
    if next_word(p, "MANIFEST") {
        p.expect_keyword(Keyword::FOR).map_err(err)?;
        let _ = p.parse_keyword(Keyword::TABLE);
        return Ok(Command::ShowManifest(table(p)?));
    }
    if next_word(p, "LIVE") {
        expect_word(p, "QUERIES")?;
        return Ok(Command::ShowLiveQueries);
    }
    if next_word(p, "STATS") {
        if !p.parse_keyword(Keyword::FOR) {
            return Ok(Command::ShowCacheStats);
        }
        let _ = p.parse_keyword(Keyword::TABLE);
        return Ok(Command::ShowStats(table(p)?));
    }
    Err(bad(format!(
        "unknown SHOW `{}` (STORAGES, NAMESPACES, TABLES, MANIFEST FOR, STATS [FOR TABLE], \
         LIVE QUERIES, CONSUMERS, USERS)",
        p.peek_token().token
    )))
}

/// `ALTER USER ...` or `ALTER TABLE ...`.
fn alter(p: &mut Parser<'_>) -> Result<Command, CliError> {
    if p.parse_keyword(Keyword::USER) {
        return users::alter_user(p);
    }
    tables::alter_table(p)
}

/// `KILL LIVE QUERY 'id'` or `KILL JOB 'id'`.
fn kill(p: &mut Parser<'_>) -> Result<Command, CliError> {
    if next_word(p, "LIVE") {
        expect_word(p, "QUERY")?;
        return Ok(Command::KillLiveQuery(string(p)?));
    }
    expect_word(p, "JOB")?;
    Ok(Command::KillJob(string(p)?))
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

/// Takes the next token when it is the (non-keyword) word `word`.
fn next_word(p: &mut Parser<'_>, word: &str) -> bool {
    let found = ident_word(p, word);
    if found {
        p.next_token();
    }
    found
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

/// A `namespace.table` name.
fn table(p: &mut Parser<'_>) -> Result<TableId, CliError> {
    table_id(&object(p)?)
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
    fn everything_else_is_sql_for_datafusion() {
        for sql in [
            "SELECT * FROM app.m WHERE body LIKE 'x%'",
            "WITH x AS (SELECT 1) SELECT * FROM x",
        ] {
            assert_eq!(parse(sql).unwrap(), Command::Sql(sql.into()));
        }
        assert!(parse("INSERT INTO app.m VALUES ('unterminated)").is_err());
    }

    #[test]
    fn a_table_name_needs_its_namespace() {
        let e = parse("SHOW STATS FOR TABLE nonamespace").unwrap_err();
        assert!(e.to_string().contains("nonamespace"), "{e:?}");
    }

    fn t(name: &str) -> TableId {
        table_id(name).unwrap()
    }

    #[test]
    fn show_and_kill_statements_parse() {
        for (sql, command) in [
            ("SHOW STORAGES", Command::ShowStorages),
            ("show namespaces", Command::ShowNamespaces),
            (
                "SHOW TABLES IN app",
                Command::ShowTables(Some("app".into())),
            ),
            ("SHOW MANIFEST FOR app.t", Command::ShowManifest(t("app.t"))),
            ("SHOW STATS", Command::ShowCacheStats),
            ("SHOW STATS FOR TABLE app.t", Command::ShowStats(t("App.T"))),
            ("SHOW LIVE QUERIES", Command::ShowLiveQueries),
            ("SHOW CONSUMERS", Command::ShowConsumers),
            ("SHOW USERS", Command::ShowUsers),
            ("KILL JOB 'j-1'", Command::KillJob("j-1".into())),
            (
                "KILL LIVE QUERY 'lq-1-2'",
                Command::KillLiveQuery("lq-1-2".into()),
            ),
        ] {
            assert_eq!(parse(sql).unwrap(), command, "{sql}");
        }
        for wrong in ["SHOW NOTHING", "KILL LIVE 'x'", "SHOW STORAGES now"] {
            assert!(matches!(parse(wrong), Err(CliError::Parse(_))), "{wrong}");
        }
    }
}
