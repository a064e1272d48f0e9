//! Storages and maintenance: `CREATE STORAGE`, `STORAGE CHECK | FLUSH | COMPACT`.

use kalamstore_sql::datafusion::sql::sqlparser;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::{Command, bad, err, ident_word, name, next_word, string, table};
use crate::error::CliError;

/// What kind of place a storage is (`CREATE STORAGE ... TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// A directory: `PATH`, or one of the data dir's.
    Filesystem,
    /// An S3 bucket and prefix (`PATH 's3://...'`).
    S3,
    /// Process memory.
    Memory,
}

impl StorageKind {
    fn parse(word: &str) -> Result<Self, CliError> {
        match word.to_ascii_lowercase().as_str() {
            "filesystem" => Ok(Self::Filesystem),
            "s3" => Ok(Self::S3),
            "memory" => Ok(Self::Memory),
            other => Err(crate::error::invalid(format!(
                "unknown storage TYPE `{other}` (filesystem, s3, memory)"
            ))),
        }
    }
}

/// The rest of `CREATE STORAGE id TYPE ... [PATH ...] [ENGINE ...] [CACHE (...)]
/// [METADATA CACHE ...] [CONFIG ...]`.
pub(super) fn create_storage(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let id = name(p)?;
    let mut kind = None;
    let mut path = None;
    let mut engine = None;
    let mut cache = None;
    let mut metadata_cache = None;
    let mut config = None;
    loop {
        if p.parse_keyword(Keyword::TYPE) {
            kind = Some(StorageKind::parse(&name(p)?)?);
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

/// The rest of `STORAGE CHECK id`, `STORAGE FLUSH TABLE ns.t [FOR USER 'u']`, `STORAGE FLUSH
/// ALL [IN ns]` or `STORAGE COMPACT TABLE ns.t`.
pub(super) fn storage(p: &mut Parser<'_>) -> Result<Command, CliError> {
    if next_word(p, "CHECK") {
        return Ok(Command::StorageCheck(name(p)?));
    }
    if next_word(p, "FLUSH") {
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
        let table = table(p)?;
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
    if next_word(p, "COMPACT") {
        p.expect_keyword(Keyword::TABLE).map_err(err)?;
        return Ok(Command::Compact(table(p)?));
    }
    Err(bad(
        "expected STORAGE CHECK, STORAGE FLUSH or STORAGE COMPACT",
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{parse, table_id};
    use super::*;

    fn t(name: &str) -> kalamstore::TableId {
        table_id(name).unwrap()
    }

    #[test]
    fn storage_statements_parse() {
        assert_eq!(
            parse("STORAGE FLUSH TABLE app.t FOR USER 'alice'").unwrap(),
            Command::Flush {
                table: Some(t("app.t")),
                namespace: None,
                user: Some("alice".into())
            }
        );
        assert_eq!(
            parse("STORAGE FLUSH ALL IN app").unwrap(),
            Command::Flush {
                table: None,
                namespace: Some("app".into()),
                user: None
            }
        );
        assert_eq!(
            parse("STORAGE COMPACT TABLE app.t").unwrap(),
            Command::Compact(t("app.t"))
        );
        assert_eq!(
            parse("STORAGE CHECK s3").unwrap(),
            Command::StorageCheck("s3".into())
        );
        assert_eq!(
            parse("CREATE STORAGE s3c TYPE s3 PATH 's3://b/p' ENGINE rocksdb CACHE (MEMORY '64MB', DISK '1GB') CONFIG '{}'").unwrap(),
            Command::CreateStorage {
                id: "s3c".into(),
                kind: StorageKind::S3,
                path: Some("s3://b/p".into()),
                engine: Some("rocksdb".into()),
                cache: Some(("64MB".into(), Some("1GB".into()))),
                metadata_cache: None,
                config: Some("{}".into()),
            }
        );
        assert!(parse("CREATE STORAGE x TYPE nowhere").is_err());
        assert!(matches!(
            parse("CREATE STORAGE m TYPE memory METADATA CACHE '8MB'").unwrap(),
            Command::CreateStorage { metadata_cache: Some(ref size), .. } if size == "8MB"
        ));
        assert_eq!(
            parse("DROP STORAGE IF EXISTS m").unwrap(),
            Command::DropStorage {
                id: "m".into(),
                if_exists: true
            }
        );
        for wrong in [
            "CREATE STORAGE m TYPE memory METADATA '8MB'",
            "CREATE STORAGE m PATH '/x'",
            "STORAGE VACUUM",
        ] {
            assert!(matches!(parse(wrong), Err(CliError::Parse(_))), "{wrong}");
        }
    }
}
