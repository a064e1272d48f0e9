//! Namespaces and tables: `CREATE`/`DROP NAMESPACE`, `CREATE [USER|SHARED|STREAM] TABLE`,
//! `ALTER TABLE`, `DESCRIBE`.

use kalamstore_sql::datafusion::sql::sqlparser;
use sqlparser::ast;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;

use kalamstore::{SchemaChange, TableType};

use super::{Command, Literal, bad, err, ident_word, literal, name, next_word, properties, table};
use crate::error::CliError;

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
    /// `DROP [COLUMN] c`, `RENAME COLUMN a TO b`, `MODIFY [COLUMN] c <type>` or
    /// `ALTER COLUMN c TYPE <type>`: the store's change itself (names lower-cased). An added
    /// column stays a [`ColumnSpec`] until its default is evaluated with the statement's
    /// parameters.
    Change(SchemaChange),
    /// `SET TBLPROPERTIES (K = v, ...)`, keys upper-cased.
    SetProperties(Vec<(String, Literal)>),
    /// `SET STORAGE <id>`.
    SetStorage(String),
    /// `REPUBLISH`: rebuild the table's Delta log.
    Republish,
}

/// The rest of `CREATE NAMESPACE` (or `SCHEMA`).
pub(super) fn create_namespace(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    Ok(Command::CreateNamespace {
        name: name(p)?,
        if_not_exists,
    })
}

/// The rest of `CREATE [USER|SHARED|STREAM] TABLE ...` (SHARED when no kind is given).
pub(super) fn create_table(p: &mut Parser<'_>) -> Result<Command, CliError> {
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
    let mut kind = TableType::Shared;
    for (word, k) in [
        ("USER", TableType::User),
        ("SHARED", TableType::Shared),
        ("STREAM", TableType::Stream),
    ] {
        if next_word(p, word) {
            kind = k;
        }
    }
    p.expect_keyword(Keyword::TABLE).map_err(err)?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let table = table(p)?;
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

/// The rest of `ALTER TABLE ns.t <action>`.
pub(super) fn alter_table(p: &mut Parser<'_>) -> Result<Command, CliError> {
    p.expect_keyword(Keyword::TABLE).map_err(err)?;
    let table = table(p)?;
    Ok(Command::AlterTable {
        table,
        action: alter_action(p)?,
    })
}

/// The rest of `DESCRIBE [TABLE] ns.t`.
pub(super) fn describe(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let _ = p.parse_keyword(Keyword::TABLE);
    Ok(Command::Describe(table(p)?))
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

fn alter_action(p: &mut Parser<'_>) -> Result<AlterAction, CliError> {
    let modify = |p: &mut Parser<'_>, name: String| -> Result<AlterAction, CliError> {
        let written = p.parse_data_type().map_err(err)?.to_string();
        let data_type = kalamstore::types::parse_sql_type(&written)
            .map_err(|e| crate::error::invalid(format!("column `{name}`: {e}")))?;
        Ok(AlterAction::Change(SchemaChange::ModifyColumn {
            name: name.to_ascii_lowercase(),
            data_type,
        }))
    };
    if p.parse_keyword(Keyword::ADD) {
        let _ = p.parse_keyword(Keyword::COLUMN);
        return Ok(AlterAction::AddColumn(column_spec(
            p.parse_column_def().map_err(err)?,
        )?));
    }
    if p.parse_keyword(Keyword::DROP) {
        let _ = p.parse_keyword(Keyword::COLUMN);
        return Ok(AlterAction::Change(SchemaChange::DropColumn(
            name(p)?.to_ascii_lowercase(),
        )));
    }
    if p.parse_keyword(Keyword::RENAME) {
        p.expect_keyword(Keyword::COLUMN).map_err(err)?;
        let from = name(p)?;
        p.expect_keyword(Keyword::TO).map_err(err)?;
        return Ok(AlterAction::Change(SchemaChange::RenameColumn {
            from: from.to_ascii_lowercase(),
            to: name(p)?.to_ascii_lowercase(),
        }));
    }
    if ident_word(p, "MODIFY") {
        p.next_token();
        let _ = p.parse_keyword(Keyword::COLUMN);
        let name = name(p)?;
        return modify(p, name);
    }
    if p.parse_keyword(Keyword::ALTER) {
        let _ = p.parse_keyword(Keyword::COLUMN);
        let name = name(p)?;
        let _ = p.parse_keywords(&[Keyword::SET, Keyword::DATA]);
        p.expect_keyword(Keyword::TYPE).map_err(err)?;
        return modify(p, name);
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

#[cfg(test)]
mod tests {
    use super::super::{parse, table_id};
    use super::*;

    fn t(name: &str) -> kalamstore::TableId {
        table_id(name).unwrap()
    }

    #[test]
    fn namespaces_and_tables_parse() {
        assert_eq!(
            parse("CREATE NAMESPACE IF NOT EXISTS app").unwrap(),
            Command::CreateNamespace {
                name: "app".into(),
                if_not_exists: true
            }
        );
        assert_eq!(
            parse("DROP NAMESPACE app CASCADE").unwrap(),
            Command::DropNamespace {
                name: "app".into(),
                if_exists: false,
                cascade: true
            }
        );
        assert_eq!(
            parse("DROP TABLE IF EXISTS app.m").unwrap(),
            Command::DropTable {
                table: t("app.m"),
                if_exists: true
            }
        );
        assert_eq!(
            parse("DESCRIBE TABLE app.m").unwrap(),
            Command::Describe(t("app.m"))
        );
        assert_eq!(
            parse("CREATE TABLE app.s (k TEXT, PRIMARY KEY (k)) STORAGE s3").unwrap(),
            Command::CreateTable {
                kind: TableType::Shared,
                if_not_exists: false,
                table: t("app.s"),
                columns: vec![ColumnSpec {
                    name: "k".into(),
                    data_type: "TEXT".into(),
                    not_null: false,
                    default: None,
                    primary_key: true,
                }],
                options: vec![("STORAGE_ID".into(), Literal::String("s3".into()))],
            }
        );
        assert!(matches!(
            parse("CREATE USER TABLE IF NOT EXISTS app.m (id BIGINT PRIMARY KEY, body TEXT NOT NULL DEFAULT 'x') WITH (FLUSH_POLICY = 'rows:10')").unwrap(),
            Command::CreateTable { ref kind, if_not_exists: true, ref columns, .. } if *kind == TableType::User && columns.len() == 2
        ));
        let alter = |sql: &str| match parse(sql).unwrap() {
            Command::AlterTable { table, action } if table == t("app.m") => action,
            other => panic!("{sql}: {other:?}"),
        };
        assert!(matches!(
            alter("ALTER TABLE app.m ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'"),
            AlterAction::AddColumn(ColumnSpec { ref name, not_null: true, default: Some(_), .. }) if name == "tag"
        ));
        assert_eq!(
            alter("ALTER TABLE app.m DROP COLUMN Tag"),
            AlterAction::Change(SchemaChange::DropColumn("tag".into()))
        );
        assert_eq!(
            alter("ALTER TABLE app.m RENAME COLUMN a TO B"),
            AlterAction::Change(SchemaChange::RenameColumn {
                from: "a".into(),
                to: "b".into()
            })
        );
        for sql in [
            "ALTER TABLE app.m MODIFY COLUMN N BIGINT",
            "ALTER TABLE app.m ALTER COLUMN n TYPE BIGINT",
        ] {
            assert_eq!(
                alter(sql),
                AlterAction::Change(SchemaChange::ModifyColumn {
                    name: "n".into(),
                    data_type: kalamstore::KalamDataType::BigInt
                })
            );
        }
        assert!(parse("ALTER TABLE app.m MODIFY COLUMN n GEOMETRY").is_err());
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
    }
}
