//! `UPDATE` and `DELETE` planned as a DataFusion query of the matching keys (any WHERE
//! DataFusion can evaluate, subqueries included) and written in one atomic batch, under the
//! statement lock of their table scope; and the checks of what an INSERT or UPDATE assigns.

use std::sync::Arc;

use arrow::array::Array;
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{Expr as LogicalExpr, ExprSchemable, LogicalPlan};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{
    self, AssignmentTarget, Delete, Expr as SqlExpr, FromTable, SetExpr, TableFactor,
    TableWithJoins, Update,
};
use futures::TryStreamExt;
use kalamstore_storage::{TableDefinition, TableId};

use super::{SqlOutput, SqlSession};
use crate::assign::{check_assignment, null_in_not_null};
use crate::error::{Result, SqlError};

impl SqlSession {
    /// `DELETE FROM t [WHERE ...]`: the keys of the matching rows, found by a query, become
    /// tombstones in one batch.
    pub(super) async fn delete(&self, delete: Delete, params: &[ScalarValue]) -> Result<SqlOutput> {
        let refuse = |what: &str| SqlError::Unsupported {
            what: format!("DELETE with {what}"),
            hint: "write DELETE FROM ns.table [WHERE ...]",
        };
        if delete.using.is_some() || delete.returning.is_some() || delete.output.is_some() {
            return Err(refuse("USING, RETURNING or OUTPUT"));
        }
        if !delete.order_by.is_empty() || delete.limit.is_some() || !delete.tables.is_empty() {
            return Err(refuse("ORDER BY, LIMIT or several tables"));
        }
        let tables = match &delete.from {
            FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
        };
        let [table] = tables.as_slice() else {
            return Err(refuse("several tables"));
        };
        let (id, def) = self.target(table).await?;
        let _exclusive = self
            .store
            .lock_for_update(&id, self.principal.user_for(&def))
            .await;
        let keys = self
            .matching(&def, &[], delete.selection.as_ref(), params)
            .await?;
        let summary = self
            .store
            .delete_keys(&def.id, self.principal.user_for(&def), &keys)
            .await?;
        Ok(SqlOutput::Changed {
            verb: "DELETE",
            rows: summary.deleted,
        })
    }

    /// `UPDATE t SET c = expr, ... [WHERE ...]`: a query evaluates the new values for the
    /// keys of the matching rows; the changes go in one batch.
    pub(super) async fn update(&self, update: Update, params: &[ScalarValue]) -> Result<SqlOutput> {
        if update.from.is_some() || update.returning.is_some() || update.output.is_some() {
            return Err(SqlError::Unsupported {
                what: "UPDATE with FROM, RETURNING or OUTPUT".into(),
                hint: "write UPDATE ns.table SET c = expr [WHERE ...]",
            });
        }
        if !update.order_by.is_empty() || update.limit.is_some() || update.or.is_some() {
            return Err(SqlError::Unsupported {
                what: "UPDATE with ORDER BY, LIMIT or OR".into(),
                hint: "write UPDATE ns.table SET c = expr [WHERE ...]",
            });
        }
        let (id, def) = self.target(&update.table).await?;
        // Concurrent UPDATEs of one row each read it, then write what they computed: one at a
        // time per scope, or an increment is lost.
        let _exclusive = self
            .store
            .lock_for_update(&id, self.principal.user_for(&def))
            .await;
        let mut set = Vec::with_capacity(update.assignments.len());
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(name) = &a.target else {
                return Err(SqlError::Unsupported {
                    what: "UPDATE of a tuple of columns".into(),
                    hint: "assign one column at a time",
                });
            };
            let column = name.to_string().to_lowercase();
            if def.schema.column(&column).is_none() {
                return Err(kalamstore_storage::Error::InvalidValue {
                    column,
                    reason: format!("table {id} has no such column"),
                }
                .into());
            }
            set.push((column, a.value.clone()));
        }
        let rows = self
            .matching(&def, &set, update.selection.as_ref(), params)
            .await?;
        let columns: Vec<String> = set.into_iter().map(|(c, _)| c).collect();
        let summary = self
            .store
            .update_keys(&def.id, self.principal.user_for(&def), &rows, &columns)
            .await?;
        Ok(SqlOutput::Changed {
            verb: "UPDATE",
            rows: summary.updated,
        })
    }

    /// Checks the literals of `INSERT ... VALUES` against their columns' types (see
    /// [`check_assignment`]) and a NULL literal against a NOT NULL column; other values are
    /// DataFusion's to convert. Returns the table's definition, when the table exists.
    pub(super) async fn check_insert_literals(
        &self,
        insert: &ast::Insert,
    ) -> Result<Option<Arc<TableDefinition>>> {
        let ast::TableObject::TableName(name) = &insert.table else {
            return Ok(None);
        };
        let Ok(id) = name.to_string().to_lowercase().parse::<TableId>() else {
            return Ok(None);
        };
        let Ok(def) = self.store.table(&id).await else {
            // DataFusion names the missing table.
            return Ok(None);
        };
        let Some(source) = &insert.source else {
            return Ok(Some(def));
        };
        let SetExpr::Values(values) = source.body.as_ref() else {
            return Ok(Some(def));
        };
        let columns: Vec<&kalamstore_storage::ColumnDefinition> = if insert.columns.is_empty() {
            def.columns().iter().collect()
        } else {
            insert
                .columns
                .iter()
                .filter_map(|c| def.schema.column(&c.to_string().to_lowercase()))
                .collect()
        };
        // A NOT NULL column left out with no default to fill it.
        if let Some(missing) = def.columns().iter().find(|c| {
            !c.nullable && c.default.is_none() && !columns.iter().any(|g| g.name == c.name)
        }) {
            return Err(null_in_not_null(&missing.name));
        }
        for row in &values.rows {
            for (expr, column) in row.content.iter().zip(&columns) {
                if !column.nullable
                    && matches!(expr, SqlExpr::Value(v) if v.value == ast::Value::Null)
                {
                    return Err(null_in_not_null(&column.name));
                }
                if let Some(from) = literal_type(expr) {
                    check_assignment(&column.name, &from, &column.data_type.to_arrow())?;
                }
            }
        }
        Ok(Some(def))
    }

    /// The table a DML statement names, with its definition.
    async fn target(&self, table: &TableWithJoins) -> Result<(TableId, Arc<TableDefinition>)> {
        let TableFactor::Table { name, .. } = &table.relation else {
            return Err(SqlError::Unsupported {
                what: "a DML target that is not a table".into(),
                hint: "name the table as ns.table",
            });
        };
        if !table.joins.is_empty() {
            return Err(SqlError::Unsupported {
                what: "a DML target with joins".into(),
                hint: "use a subquery in WHERE",
            });
        }
        let id: TableId = name.to_string().to_lowercase().parse()?;
        let def = self.store.table(&id).await?;
        Ok((id, def))
    }

    /// The primary keys of `def`'s rows matching `selection`, in key order, each with the
    /// values of `set`'s expressions for that row cast to the assigned columns' types: one
    /// batch of the key columns, then one column per assignment.
    async fn matching(
        &self,
        def: &TableDefinition,
        set: &[(String, SqlExpr)],
        selection: Option<&SqlExpr>,
        params: &[ScalarValue],
    ) -> Result<RecordBatch> {
        let pk: Vec<_> = def.primary_key().collect();
        let key_columns: Vec<String> = pk.iter().map(|c| quoted(&c.name)).collect();
        let mut items = key_columns.clone();
        for (i, (_, expr)) in set.iter().enumerate() {
            items.push(format!("({expr}) AS \"__kalamstore_set_{i}\""));
        }
        let mut sql = format!(
            "SELECT {} FROM {}.{}",
            items.join(", "),
            quoted(def.id.namespace.as_str()),
            quoted(def.id.table.as_str())
        );
        if let Some(w) = selection {
            sql.push_str(&format!(" WHERE {w}"));
        }
        // In key order: the store then stages a large statement chunk by chunk, each one
        // key range of its files.
        sql.push_str(&format!(" ORDER BY {}", key_columns.join(", ")));
        let mut statements = DFParser::parse_sql(&sql)?;
        let statement = statements
            .pop_front()
            .ok_or_else(|| SqlError::Unsupported {
                what: "an UPDATE or DELETE that plans no query".into(),
                hint: "write UPDATE/DELETE ... [WHERE ...]",
            })?;
        let stream = self.execute(statement, params).await?;
        let schema = stream.schema();
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        let strict = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        let mut fields: Vec<Arc<arrow::datatypes::Field>> =
            schema.fields().iter().take(pk.len()).cloned().collect();
        for (column, _) in set {
            let c = def.schema.column(column).ok_or_else(|| {
                kalamstore_storage::Error::InvalidValue {
                    column: column.clone(),
                    reason: "no such column".into(),
                }
            })?;
            fields.push(Arc::new(arrow::datatypes::Field::new(
                column,
                c.data_type.to_arrow(),
                true,
            )));
        }
        let out_schema = Arc::new(arrow::datatypes::Schema::new(fields));
        let mut out = Vec::with_capacity(batches.len());
        for batch in &batches {
            let mut assigned = Vec::with_capacity(set.len());
            for (i, (column, _)) in set.iter().enumerate() {
                let c = def.schema.column(column).ok_or_else(|| {
                    kalamstore_storage::Error::InvalidValue {
                        column: column.clone(),
                        reason: "no such column".into(),
                    }
                })?;
                let given = batch.column(pk.len() + i);
                check_assignment(column, given.data_type(), &c.data_type.to_arrow())?;
                let array =
                    cast_with_options(given, &c.data_type.to_arrow(), &strict).map_err(|e| {
                        kalamstore_storage::Error::InvalidValue {
                            column: column.clone(),
                            reason: format!("the new value is not a {}: {e}", c.data_type),
                        }
                    })?;
                assigned.push(array);
            }
            let mut columns: Vec<_> = batch.columns().iter().take(pk.len()).cloned().collect();
            columns.extend(assigned);
            let batch = RecordBatch::try_new(out_schema.clone(), columns)
                .map_err(datafusion::error::DataFusionError::from)?;
            out.push(batch);
        }
        Ok(arrow::compute::concat_batches(&out_schema, &out)
            .map_err(datafusion::error::DataFusionError::from)?)
    }
}

/// DataFusion's check of a sink's NOT NULL columns names a position (`Invalid batch column at
/// '1' has null but schema specifies non-nullable`, its only report): `e` as the refusal
/// naming the column of `def` at that position, as the other paths give it.
pub(super) fn name_null_column(e: SqlError, def: Option<&TableDefinition>) -> SqlError {
    let (SqlError::DataFusion(inner), Some(def)) = (&e, def) else {
        return e;
    };
    let text = inner.find_root().to_string();
    let position = text
        .split("Invalid batch column at '")
        .nth(1)
        .filter(|_| text.contains("has null but schema specifies non-nullable"))
        .and_then(|rest| rest.split('\'').next())
        .and_then(|n| n.parse::<usize>().ok());
    match position.and_then(|i| def.columns().get(i)) {
        Some(column) => null_in_not_null(&column.name),
        None => e,
    }
}

/// Checks the columns an `INSERT ... SELECT` stores: DataFusion plans it as a projection
/// onto the table's columns, casting each where the types differ; see [`check_assignment`].
/// (Literals of `VALUES` are checked on the statement, where an explicit `CAST` still shows.)
pub(super) fn check_insert(plan: &LogicalPlan) -> Result<()> {
    let LogicalPlan::Dml(dml) = plan else {
        return Ok(());
    };
    let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
        return Ok(());
    };
    let input = projection.input.schema();
    for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
        if let LogicalExpr::Cast(cast) = expr.clone().unalias()
            && matches!(cast.expr.as_ref(), LogicalExpr::Column(_))
            && !matches!(projection.input.as_ref(), LogicalPlan::Values(_))
        {
            check_assignment(field.name(), &cast.expr.get_type(input)?, field.data_type())?;
        }
    }
    Ok(())
}

/// A literal's type family: a number or boolean, a string, or anything else.
fn literal_type(expr: &SqlExpr) -> Option<DataType> {
    use datafusion::sql::sqlparser::ast::{UnaryOperator, Value};
    match expr {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(..) => Some(DataType::Int64),
            Value::Boolean(_) => Some(DataType::Boolean),
            Value::SingleQuotedString(_) | Value::DoubleQuotedString(_) => Some(DataType::Utf8),
            _ => None,
        },
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => literal_type(expr).filter(|t| *t == DataType::Int64),
        SqlExpr::Nested(inner) => literal_type(inner),
        _ => None,
    }
}

/// The row count in the one-row `count` batch a DataFusion `INSERT` returns.
pub(super) fn count_of(batch: &RecordBatch) -> u64 {
    batch
        .column_by_name("count")
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>())
        .filter(|c| !c.is_empty())
        .map_or(0, |c| c.value(0))
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
