//! Updates of one row by its key: `UPDATE ns.t SET c = <expr>, ... WHERE <key> = $n` on a
//! table whose primary key is that one column. The row is read by key and the `SET`
//! expressions are evaluated over it, without planning a query per execution (what a server's
//! prepared UPDATE runs over and over). Under the same statement lock as the planned path,
//! so concurrent increments are not lost. Any other shape, or a table that does not fit,
//! takes the planned path, which also gives any error its usual message.

use std::sync::Arc;

use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ParamValues, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::Expr as LogicalExpr;
use datafusion::logical_expr::expr::Placeholder;
use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, TableFactor, Update, Value,
};
use kalamstore_storage::codec::{array_from_values, value_at};
use kalamstore_storage::{Mutation, Store, TableId};

use crate::error::Result;
use crate::point::keyed_table;
use crate::principal::Principal;

/// An `UPDATE` of the row whose one-column key equals a parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowUpdate {
    table: TableId,
    /// The key column, lower-cased.
    key: String,
    /// The parameter holding the key's value (0-based).
    param: usize,
    /// Each assigned column (lower-cased) and its expression's SQL.
    set: Vec<(String, String)>,
}

/// The update of one row by key `update` is, if it is one.
pub(crate) fn row_update(update: &Update) -> Option<RowUpdate> {
    if update.from.is_some()
        || update.returning.is_some()
        || update.output.is_some()
        || !update.order_by.is_empty()
        || update.limit.is_some()
        || update.or.is_some()
        || !update.table.joins.is_empty()
    {
        return None;
    }
    let TableFactor::Table {
        name,
        alias: None,
        args: None,
        ..
    } = &update.table.relation
    else {
        return None;
    };
    let table: TableId = name.to_string().to_lowercase().parse().ok()?;
    let Some(Expr::BinaryOp {
        left,
        op: BinaryOperator::Eq,
        right,
    }) = &update.selection
    else {
        return None;
    };
    let (key, param) = match (left.as_ref(), right.as_ref()) {
        (Expr::Identifier(k), Expr::Value(v)) | (Expr::Value(v), Expr::Identifier(k))
            if k.quote_style.is_none() =>
        {
            let Value::Placeholder(p) = &v.value else {
                return None;
            };
            let n = p
                .strip_prefix('$')?
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)?;
            (k.value.to_lowercase(), n - 1)
        }
        _ => return None,
    };
    let set = update
        .assignments
        .iter()
        .map(|a| match &a.target {
            AssignmentTarget::ColumnName(c) => {
                Some((c.to_string().to_lowercase(), a.value.to_string()))
            }
            AssignmentTarget::Tuple(_) => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some(RowUpdate {
        table,
        key,
        param,
        set,
    })
}

/// `expr` with each `$n` replaced by its value.
fn bind(expr: LogicalExpr, params: &[ScalarValue]) -> Result<LogicalExpr> {
    let values = ParamValues::List(params.iter().cloned().map(Into::into).collect());
    Ok(expr
        .transform_up(|e| match e {
            LogicalExpr::Placeholder(Placeholder { id, .. }) => {
                let (value, metadata) = values.get_placeholders_with_values(&id)?.into_inner();
                Ok(Transformed::yes(LogicalExpr::Literal(value, metadata)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

impl RowUpdate {
    /// Updates the row; how many rows changed (0 or 1), or `None` when the table or a value
    /// does not plainly fit (the caller plans the statement).
    pub(crate) async fn run(
        &self,
        store: &Store,
        ctx: &SessionContext,
        principal: &Principal,
        params: &[ScalarValue],
    ) -> Result<Option<u64>> {
        let Some((def, at)) = keyed_table(store, &self.table, principal, &self.key).await else {
            return Ok(None);
        };
        let Some(param) = params.get(self.param) else {
            return Ok(None);
        };
        let columns = def.columns();
        let key = &columns[at];
        let mut targets = Vec::with_capacity(self.set.len());
        for (name, _) in &self.set {
            match columns.iter().position(|c| c.name.to_lowercase() == *name) {
                // The key stays: an update that moves a row to another key is the planned
                // path's (and refused there with its message).
                Some(i) if columns[i].name != key.name => targets.push(i),
                _ => return Ok(None),
            }
        }
        let Ok(cast) = param.cast_to(&key.data_type.to_arrow()) else {
            return Ok(None);
        };
        if cast.is_null() {
            return Ok(Some(0));
        }
        let key_value = value_at(cast.to_array()?.as_ref(), key.data_type, 0)?;
        let user = principal.user_for(&def);
        // Concurrent UPDATEs of one row each read it, then write what they computed: one at a
        // time per scope, as on the planned path.
        let _exclusive = store.lock_for_update(&self.table, user).await;
        let Some(row) = store
            .get(&self.table, user, std::slice::from_ref(&key_value))
            .await?
        else {
            return Ok(Some(0));
        };
        let schema = Arc::new(Schema::new(
            columns.iter().map(|c| c.arrow_field()).collect::<Vec<_>>(),
        ));
        let arrays = columns
            .iter()
            .zip(&row)
            .map(|(c, v)| array_from_values(&c.name, c.data_type, std::slice::from_ref(v)))
            .collect::<kalamstore_storage::Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(schema.clone(), arrays)
            .map_err(datafusion::error::DataFusionError::from)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let strict = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut set = Vec::with_capacity(targets.len());
        for ((_, sql), i) in self.set.iter().zip(targets) {
            let column = &columns[i];
            let expr = bind(ctx.parse_sql_expr(sql, &df_schema)?, params)?;
            let value = ctx
                .create_physical_expr(expr, &df_schema)?
                .evaluate(&batch)?
                .into_array(1)?;
            // A value that needs more than a plain cast (text into a number, ...) is the
            // planned path's to refuse with its message.
            if crate::assign::check_assignment(
                &column.name,
                value.data_type(),
                &column.data_type.to_arrow(),
            )
            .is_err()
            {
                return Ok(None);
            }
            let Ok(value) = cast_with_options(&value, &column.data_type.to_arrow(), &strict) else {
                return Ok(None);
            };
            set.push((
                column.name.clone(),
                value_at(value.as_ref(), column.data_type, 0)?,
            ));
        }
        let summary = store
            .write(
                &self.table,
                user,
                vec![Mutation::Update {
                    key: vec![key_value],
                    set,
                }],
            )
            .await?;
        Ok(Some(summary.updated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn shape(sql: &str) -> Option<RowUpdate> {
        match Parser::parse_sql(&GenericDialect {}, sql)
            .unwrap()
            .remove(0)
        {
            Statement::Update(u) => row_update(&u),
            _ => None,
        }
    }

    #[test]
    fn only_an_update_of_the_key_equal_to_a_parameter_is_a_row_update() {
        assert_eq!(
            shape("UPDATE bench.counters SET n = n + 1 WHERE id = $1"),
            Some(RowUpdate {
                table: "bench.counters".parse().unwrap(),
                key: "id".into(),
                param: 0,
                set: vec![("n".into(), "n + 1".into())],
            })
        );
        assert_eq!(
            shape("UPDATE app.t SET body = $1, N = n * 2 WHERE $2 = id").map(|u| (u.param, u.set)),
            Some((
                1,
                vec![("body".into(), "$1".into()), ("n".into(), "n * 2".into())]
            ))
        );
        for other in [
            "UPDATE app.t SET n = 1",
            "UPDATE app.t SET n = 1 WHERE id = 1",
            "UPDATE app.t SET n = 1 WHERE id > $1",
            "UPDATE app.t SET n = 1 WHERE id = $1 AND n = 2",
            "UPDATE app.t AS a SET n = 1 WHERE id = $1",
            "UPDATE app.t SET n = 1 WHERE \"id\" = $1",
            "UPDATE app.t SET n = 1 WHERE id = $0",
        ] {
            assert_eq!(shape(other), None, "{other}");
        }
    }
}
