//! One-row inserts by parameter: `INSERT INTO ns.t [(cols)] VALUES ($1, 'text', 42, NULL, ...)`
//! written straight to the store, without a DataFusion plan per execution (what a server's
//! prepared INSERT runs over and over). A NULL for a NOT NULL column is refused naming the
//! column; a value that does not plainly fit its column (text into a number, a literal of
//! another type) or any other shape takes the planned path, which also gives any error its
//! usual message.

use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{Expr, Insert, SetExpr, TableObject, Value};
use kalamstore_storage::codec::value_at;
use kalamstore_storage::{KalamDataType, KalamValue, Mutation, Store, TableId, TableType};

use crate::assign::null_in_not_null;
use crate::error::Result;
use crate::principal::Principal;

/// A value of the row: a parameter or a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Param(usize),
    Number(String),
    Text(String),
    Null,
}

/// A one-row `INSERT ... VALUES` of parameters and plain literals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RowInsert {
    table: TableId,
    /// The columns given, lower-cased (empty: all, in order).
    columns: Vec<String>,
    values: Vec<Source>,
}

/// The one-row insert `insert` is, if it is one.
pub(crate) fn row_insert(insert: &Insert) -> Option<RowInsert> {
    if insert.or.is_some()
        || insert.ignore
        || insert.overwrite
        || insert.replace_into
        || insert.table_alias.is_some()
        || !insert.assignments.is_empty()
        || insert.partitioned.is_some()
        || !insert.after_columns.is_empty()
        || insert.on.is_some()
        || insert.returning.is_some()
        || insert.output.is_some()
    {
        return None;
    }
    let TableObject::TableName(name) = &insert.table else {
        return None;
    };
    let table: TableId = name.to_string().to_lowercase().parse().ok()?;
    let source = insert.source.as_ref()?;
    if source.with.is_some() || source.order_by.is_some() || source.limit_clause.is_some() {
        return None;
    }
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    let [row] = values.rows.as_slice() else {
        return None;
    };
    let values = row
        .content
        .iter()
        .map(|e| match e {
            Expr::Value(v) => match &v.value {
                Value::Placeholder(p) => p
                    .strip_prefix('$')
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|n| *n >= 1)
                    .map(|n| Source::Param(n - 1)),
                Value::Number(n, false) => Some(Source::Number(n.clone())),
                Value::SingleQuotedString(s) => Some(Source::Text(s.clone())),
                Value::Null => Some(Source::Null),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    let columns = insert
        .columns
        .iter()
        .map(|c| c.to_string().to_lowercase())
        .collect();
    Some(RowInsert {
        table,
        columns,
        values,
    })
}

fn is_number(t: KalamDataType) -> bool {
    use KalamDataType as K;
    matches!(
        t,
        K::SmallInt | K::Int | K::BigInt | K::Float | K::Double | K::Decimal { .. }
    )
}

impl RowInsert {
    /// Writes the row; `None` when it does not plainly fit (the caller plans the statement).
    pub(crate) async fn run(
        &self,
        store: &Store,
        principal: &Principal,
        params: &[ScalarValue],
    ) -> Result<Option<u64>> {
        let Ok(def) = store.table(&self.table).await else {
            return Ok(None);
        };
        if def.table_type == TableType::User && principal.user_for(&def).is_none() {
            return Ok(None);
        }
        let all = def.columns();
        let targets: Vec<usize> = if self.columns.is_empty() {
            (0..all.len()).collect()
        } else {
            let mut t = Vec::with_capacity(self.columns.len());
            for name in &self.columns {
                match all.iter().position(|c| c.name.to_lowercase() == *name) {
                    Some(i) if !t.contains(&i) => t.push(i),
                    _ => return Ok(None),
                }
            }
            t
        };
        if targets.len() != self.values.len() {
            return Ok(None);
        }
        // An omitted NOT NULL column without a default is the planner's error to report.
        if all
            .iter()
            .enumerate()
            .any(|(i, c)| !targets.contains(&i) && !c.nullable && c.default.is_none())
        {
            return Ok(None);
        }
        let mut named = Vec::with_capacity(targets.len());
        for (source, i) in self.values.iter().zip(&targets) {
            let column = &all[*i];
            let scalar = match source {
                Source::Null => None,
                Source::Param(n) => match params.get(*n) {
                    Some(v) if v.is_null() => None,
                    Some(v) => Some(v.clone()),
                    None => return Ok(None),
                },
                Source::Number(n) if is_number(column.data_type) => {
                    Some(ScalarValue::Utf8(Some(n.clone())))
                }
                Source::Text(s)
                    if matches!(column.data_type, KalamDataType::Text | KalamDataType::Json) =>
                {
                    Some(ScalarValue::Utf8(Some(s.clone())))
                }
                Source::Number(_) | Source::Text(_) => return Ok(None),
            };
            let value = match scalar {
                None if !column.nullable => return Err(null_in_not_null(&column.name)),
                None => KalamValue::Null,
                Some(v) => {
                    let text_value = matches!(
                        v,
                        ScalarValue::Utf8(_) | ScalarValue::LargeUtf8(_) | ScalarValue::Utf8View(_)
                    );
                    let text_column =
                        matches!(column.data_type, KalamDataType::Text | KalamDataType::Json);
                    // A parameter of text for another type, or of another type for text: the
                    // planner casts or refuses it.
                    if matches!(source, Source::Param(_)) && text_value != text_column {
                        return Ok(None);
                    }
                    let Ok(cast) = v.cast_to(&column.data_type.to_arrow()) else {
                        return Ok(None);
                    };
                    if cast.is_null() {
                        return Ok(None);
                    }
                    value_at(cast.to_array()?.as_ref(), column.data_type, 0)?
                }
            };
            named.push((column.name.clone(), value));
        }
        let summary = store
            .write(
                &self.table,
                principal.user_for(&def),
                vec![Mutation::Insert(named)],
            )
            .await?;
        Ok(Some(summary.inserted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn shape(sql: &str) -> Option<RowInsert> {
        match Parser::parse_sql(&GenericDialect {}, sql)
            .unwrap()
            .remove(0)
        {
            Statement::Insert(i) => row_insert(&i),
            _ => None,
        }
    }

    #[test]
    fn only_one_row_of_parameters_and_plain_literals_is_written_directly() {
        assert_eq!(
            shape("INSERT INTO bench.events (id, body) VALUES ($1, 'event')"),
            Some(RowInsert {
                table: "bench.events".parse().unwrap(),
                columns: vec!["id".into(), "body".into()],
                values: vec![Source::Param(0), Source::Text("event".into())],
            })
        );
        for other in [
            "INSERT INTO app.t VALUES ($1), ($2)",
            "INSERT INTO app.t SELECT * FROM app.u",
            "INSERT INTO app.t VALUES ($1 + 1)",
            "INSERT INTO app.t VALUES (-1)",
            "INSERT INTO app.t VALUES (now())",
            "REPLACE INTO app.t VALUES ($1)",
        ] {
            assert_eq!(shape(other), None, "{other}");
        }
    }
}
