//! Durable consumers: `CREATE CONSUMER`, `CONSUME FROM`, `ACK ... UPTO`, `DROP CONSUMER`, each
//! checked against the principal (a user reaches only consumers of their own rows; every
//! user's changes are an operator's).

use kalamstore::{ConsumerRecord, TableType};
use kalamstore_sql::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use kalamstore_sql::{Principal, SqlError, changes_batch};

use crate::error::CliError;
use crate::parse::Command;
use crate::session::{Outcome, Session};

/// Rows `CONSUME FROM` returns unless given a limit.
const CONSUME_LIMIT: usize = 1000;

fn forbidden(what: String) -> CliError {
    CliError::Sql(SqlError::Forbidden { what })
}

/// Refuses a user principal a consumer of another scope.
fn check_owner(c: &ConsumerRecord, principal: &Principal) -> Result<(), CliError> {
    match principal {
        Principal::User(me) if c.all_users || c.user.as_ref().is_some_and(|u| u != me) => Err(
            forbidden(format!("user {me} may not use consumer {}", c.name)),
        ),
        _ => Ok(()),
    }
}

impl Session {
    /// Runs a consumer statement as `principal`.
    pub(crate) async fn consumer_command(
        &self,
        command: Command,
        principal: &Principal,
    ) -> Result<Outcome, CliError> {
        let store = &self.store;
        Ok(match command {
            Command::CreateConsumer {
                name,
                table,
                all_users,
                start,
            } => {
                let id = table;
                let def = store.table(&id).await?;
                let user = match (principal, all_users) {
                    (Principal::User(me), true) => {
                        return Err(forbidden(format!(
                            "user {me} may not follow every user's rows of {id}"
                        )));
                    }
                    (Principal::User(me), false) if def.table_type == TableType::User => {
                        Some(me.clone())
                    }
                    _ => None,
                };
                let all_users = all_users || principal.reads_all_users(&def);
                let c = store
                    .create_consumer(&name, &id, user.as_ref(), all_users, start)
                    .await?;
                Outcome::Done(format!("CREATE CONSUMER {name} at _seq {}", c.acked))
            }
            Command::Consume { name, limit } => {
                let c = store.consumer(&name).await?;
                check_owner(&c, principal)?;
                let def = store.table(&c.table).await?;
                let page = store.consume(&name, limit.unwrap_or(CONSUME_LIMIT)).await?;
                let batch = changes_batch(&def, &page.changes, c.all_users)?;
                let schema = batch.schema();
                let rows = futures::stream::once(async move { Ok(batch) });
                Outcome::Rows(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
            }
            Command::Ack { name, seq } => {
                check_owner(&store.consumer(&name).await?, principal)?;
                let c = store.ack(&name, seq).await?;
                Outcome::Done(format!("ACK {name} at _seq {}", c.acked))
            }
            Command::DropConsumer { name, if_exists } => {
                if let Ok(c) = store.consumer(&name).await {
                    check_owner(&c, principal)?;
                }
                store.drop_consumer(&name, if_exists).await?;
                Outcome::Done(format!("DROP CONSUMER {name}"))
            }
            other => {
                return Err(crate::error::invalid(format!(
                    "not a consumer statement: {other:?}"
                )));
            }
        })
    }
}
