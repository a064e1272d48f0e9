//! A statement parsed once to run many times: its DataFusion statement and the direct path it
//! takes where it has one (a key lookup, a one-row insert or update), so a server's prepared
//! statement binds and runs without parsing again.

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, Ident, Query, SelectItem, SetExpr, Statement,
};

use crate::error::{Result, SqlError};

/// One statement parsed once to run many times (a server's prepared statement): its parsed
/// form and, where it has one, the direct path it takes (a key lookup, a one-row write).
#[derive(Debug, Clone)]
pub struct SqlStatement {
    pub(crate) statement: DfStatement,
    /// A read of one row by its key from `$1`.
    pub(crate) point: Option<crate::point::PointQuery>,
    /// A one-row INSERT of parameters.
    pub(crate) insert: Option<crate::insert_row::RowInsert>,
    /// An UPDATE of one row by its key from a parameter.
    pub(crate) update: Option<crate::update_row::RowUpdate>,
}

impl SqlStatement {
    /// Parses `sql`: one query, INSERT, UPDATE, DELETE or EXPLAIN.
    pub fn parse(sql: &str) -> Result<Self> {
        let mut statements = DFParser::parse_sql(sql)?;
        let statement = match (statements.pop_front(), statements.is_empty()) {
            (Some(s), true) => s,
            (None, _) => {
                return Err(SqlError::Unsupported {
                    what: "an empty statement".into(),
                    hint: "write one statement",
                });
            }
            (Some(_), false) => {
                return Err(SqlError::Unsupported {
                    what: "more than one statement in one call".into(),
                    hint: "run them one at a time",
                });
            }
        };
        let (mut point, mut insert, mut update) = (None, None, None);
        let statement = match statement {
            DfStatement::Statement(s) => match *s {
                Statement::Query(mut query) => {
                    point = crate::point::point_query(&query);
                    name_like_postgres(&mut query);
                    DfStatement::Statement(Box::new(Statement::Query(query)))
                }
                Statement::Insert(i) => {
                    insert = crate::insert_row::row_insert(&i);
                    DfStatement::Statement(Box::new(Statement::Insert(i)))
                }
                Statement::Update(u) => {
                    update = crate::update_row::row_update(&u);
                    DfStatement::Statement(Box::new(Statement::Update(u)))
                }
                s @ (Statement::Delete(_) | Statement::Explain { .. }) => {
                    DfStatement::Statement(Box::new(s))
                }
                other => {
                    return Err(SqlError::Unsupported {
                        what: format!("`{}`", first_words(&other.to_string())),
                        hint: "kalamstore runs queries, INSERT, UPDATE, DELETE and EXPLAIN \
                               through SQL; tables and storages have their own statements",
                    });
                }
            },
            explain @ DfStatement::Explain(_) => explain,
            other => {
                return Err(SqlError::Unsupported {
                    what: format!("`{}`", first_words(&other.to_string())),
                    hint: "kalamstore runs queries, INSERT, UPDATE, DELETE and EXPLAIN through SQL",
                });
            }
        };
        Ok(Self {
            statement,
            point,
            insert,
            update,
        })
    }
}

pub(crate) fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Names unaliased function calls of a query's select list after the function, as
/// PostgreSQL does (`SELECT count(*)` returns a column `count`), where that name is unique
/// in the list.
pub(crate) fn name_like_postgres(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let name_of = |item: &SelectItem| -> Option<String> {
        match item {
            SelectItem::UnnamedExpr(SqlExpr::Function(f)) => {
                f.name.0.last().map(|p| p.to_string().to_lowercase())
            }
            SelectItem::UnnamedExpr(SqlExpr::Identifier(i)) => Some(i.value.to_lowercase()),
            SelectItem::UnnamedExpr(SqlExpr::CompoundIdentifier(i)) => {
                i.last().map(|p| p.value.to_lowercase())
            }
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.to_lowercase()),
            _ => None,
        }
    };
    let names: Vec<Option<String>> = select.projection.iter().map(name_of).collect();
    for (i, item) in select.projection.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(expr @ SqlExpr::Function(_)) = item else {
            continue;
        };
        let Some(name) = &names[i] else { continue };
        if names.iter().filter(|n| n.as_ref() == Some(name)).count() == 1 {
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias: Ident::new(name.clone()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unaliased_function_calls_are_named_after_the_function_when_unique() {
        let mut statements =
            DFParser::parse_sql("SELECT count(*), max(a), max(b), lower(c) AS l, a FROM t")
                .unwrap();
        let Some(DfStatement::Statement(s)) = statements.pop_front() else {
            panic!("a statement")
        };
        let Statement::Query(mut q) = *s else {
            panic!("a query")
        };
        name_like_postgres(&mut q);
        assert_eq!(
            q.to_string(),
            "SELECT count(*) AS count, max(a), max(b), lower(c) AS l, a FROM t"
        );
    }
}
