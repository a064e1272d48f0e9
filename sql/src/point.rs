//! Point reads by parameter: `SELECT <columns | *> FROM ns.t WHERE <key> = $1` on a table whose
//! primary key is that one column, answered by one key lookup in the store instead of a
//! DataFusion plan per execution (what a server's prepared statement runs over and over).
//! Anything else, or a table whose shape does not fit, takes the planned path.

use std::sync::Arc;

use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, GroupByExpr, Query, SelectItem, SetExpr, TableFactor, Value,
};
use kalamstore_storage::codec::{array_from_values, value_at};
use kalamstore_storage::{Store, TableDefinition, TableId, TableType};

use crate::error::Result;
use crate::principal::Principal;

/// A query of one row by its one-column key, from a `$1` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PointQuery {
    table: TableId,
    /// The columns asked for, lower-cased; `None` for `*`.
    columns: Option<Vec<String>>,
    key: String,
}

/// The point query `query` is, if it is one.
pub(crate) fn point_query(query: &Query) -> Option<PointQuery> {
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
        || !query.locks.is_empty()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let no_grouping = match &select.group_by {
        GroupByExpr::Expressions(e, m) => e.is_empty() && m.is_empty(),
        GroupByExpr::All(_) => false,
    };
    if select.distinct.is_some()
        || select.top.is_some()
        || select.having.is_some()
        || !no_grouping
        || !select.named_window.is_empty()
        || select.qualify.is_some()
        || select.into.is_some()
        || !select.lateral_views.is_empty()
    {
        return None;
    }
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name,
        alias: None,
        args: None,
        ..
    } = &from.relation
    else {
        return None;
    };
    let table: TableId = name.to_string().parse().ok()?;
    let columns = match select.projection.as_slice() {
        [SelectItem::Wildcard(_)] => None,
        items => Some(
            items
                .iter()
                .map(|i| match i {
                    SelectItem::UnnamedExpr(Expr::Identifier(id)) if id.quote_style.is_none() => {
                        Some(id.value.to_lowercase())
                    }
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
        ),
    };
    let Some(Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    }) = &select.selection
    else {
        return None;
    };
    let key = match (left.as_ref(), right.as_ref()) {
        (Expr::Identifier(k), Expr::Value(v)) | (Expr::Value(v), Expr::Identifier(k))
            if matches!(&v.value, Value::Placeholder(p) if p == "$1")
                && k.quote_style.is_none() =>
        {
            k.value.to_lowercase()
        }
        _ => return None,
    };
    Some(PointQuery {
        table,
        columns,
        key,
    })
}

/// The table of a statement on one row by its key (this module's reads, `update_row`'s
/// writes) and the index of its one key column, named `key`, when the direct path serves it:
/// not a STREAM table (its rows expire by time) and not every user's rows at once (an
/// operator's, which adds `_user` or needs a user to write). `None` sends the statement to
/// the planned path, which also gives any error its usual message.
pub(crate) async fn keyed_table(
    store: &Store,
    table: &TableId,
    principal: &Principal,
    key: &str,
) -> Option<(Arc<TableDefinition>, usize)> {
    let def = store.table(table).await.ok()?;
    if def.table_type == TableType::Stream
        || principal.reads_all_users(&def)
        || (def.table_type == TableType::User && principal.user_for(&def).is_none())
    {
        return None;
    }
    let name = {
        let mut keys = def.primary_key();
        let (Some(only), None) = (keys.next(), keys.next()) else {
            return None;
        };
        only.name.clone()
    };
    if name.to_lowercase() != key {
        return None;
    }
    let at = def.columns().iter().position(|c| c.name == name)?;
    Some((def, at))
}

impl PointQuery {
    /// The row, or `None` when the table does not fit a point read (the caller plans the
    /// query instead, which also gives any error its usual message).
    pub(crate) async fn run(
        &self,
        store: &Store,
        principal: &Principal,
        param: &ScalarValue,
    ) -> Result<Option<SendableRecordBatchStream>> {
        let Some((def, at)) = keyed_table(store, &self.table, principal, &self.key).await else {
            return Ok(None);
        };
        let columns = def.columns();
        let key = &columns[at];
        let picked: Vec<usize> = match &self.columns {
            None => (0..columns.len()).collect(),
            Some(names) => {
                let mut picked = Vec::with_capacity(names.len());
                for n in names {
                    let Some(i) = columns.iter().position(|c| c.name.to_lowercase() == *n) else {
                        return Ok(None);
                    };
                    picked.push(i);
                }
                picked
            }
        };
        let Ok(cast) = param.cast_to(&key.data_type.to_arrow()) else {
            return Ok(None);
        };
        let row = if cast.is_null() {
            None
        } else {
            let value = value_at(cast.to_array()?.as_ref(), key.data_type, 0)?;
            store
                .get(&self.table, principal.user_for(&def), &[value])
                .await?
        };
        let schema = Arc::new(Schema::new(
            picked
                .iter()
                .map(|i| columns[*i].arrow_field())
                .collect::<Vec<_>>(),
        ));
        let arrays = picked
            .iter()
            .map(|i| {
                let c = &columns[*i];
                let values: Vec<_> = row.iter().map(|r| r[*i].clone()).collect();
                array_from_values(&c.name, c.data_type, &values)
            })
            .collect::<kalamstore_storage::Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(datafusion::error::DataFusionError::from)?;
        let stream = futures::stream::iter(vec![Ok(batch)]);
        Ok(Some(Box::pin(RecordBatchStreamAdapter::new(
            schema, stream,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn shape(sql: &str) -> Option<PointQuery> {
        let statements = Parser::parse_sql(&GenericDialect {}, sql).unwrap();
        match &statements[0] {
            datafusion::sql::sqlparser::ast::Statement::Query(q) => point_query(q),
            _ => None,
        }
    }

    #[test]
    fn only_a_key_equal_to_the_first_parameter_is_a_point_query() {
        assert_eq!(
            shape("SELECT id, n FROM bench.counters WHERE id = $1"),
            Some(PointQuery {
                table: "bench.counters".parse().unwrap(),
                columns: Some(vec!["id".into(), "n".into()]),
                key: "id".into(),
            })
        );
        assert!(shape("SELECT * FROM app.t WHERE $1 = id").is_some());
        for other in [
            "SELECT id FROM app.t WHERE id = $2",
            "SELECT id FROM app.t WHERE id = 1",
            "SELECT id FROM app.t WHERE id = $1 ORDER BY id",
            "SELECT id FROM app.t WHERE id = $1 LIMIT 1",
            "SELECT id + 1 FROM app.t WHERE id = $1",
            "SELECT count(*) FROM app.t WHERE id = $1",
            "SELECT a.id FROM app.t a WHERE id = $1",
            "SELECT id FROM app.t JOIN app.u ON true WHERE id = $1",
            "SELECT id FROM app.t WHERE id > $1",
            "SELECT DISTINCT id FROM app.t WHERE id = $1",
        ] {
            assert_eq!(shape(other), None, "{other}");
        }
    }
}
