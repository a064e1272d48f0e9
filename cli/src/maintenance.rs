//! Maintenance statements: flushes and compactions (jobs), `KILL JOB` and `EXPORT USER DATA`.

use kalamstore::{
    CompactionPolicy, JobRecord, NamespaceId, Scope, TableDefinition, TableType, UserId,
};

use crate::error::{CliError, invalid};
use crate::parse::Command;
use crate::session::{Outcome, Session};

/// One line about a finished job.
pub(crate) fn job_line(what: &str, job: &JobRecord) -> String {
    format!(
        "{what}: job {} {}, {} rows, {} files, {} bytes",
        job.id, job.status, job.rows, job.files, job.bytes
    )
}

impl Session {
    /// Runs a maintenance statement.
    pub(crate) async fn maintenance(&self, command: Command) -> Result<Outcome, CliError> {
        let store = &self.store;
        Ok(Outcome::Done(match command {
            Command::Flush {
                table,
                namespace,
                user,
            } => {
                let targets: Vec<TableDefinition> = match &table {
                    Some(t) => vec![store.table(t).await?.as_ref().clone()],
                    None => {
                        let ns = namespace.map(NamespaceId::new).transpose()?;
                        store
                            .tables(ns.as_ref())
                            .await?
                            .into_iter()
                            .filter(|d| d.table_type != TableType::Stream)
                            .collect()
                    }
                };
                let scope = match user {
                    Some(u) => Scope::User(UserId::new(u)?),
                    None => Scope::All,
                };
                let mut lines = Vec::new();
                for def in targets {
                    let bar = self.spinner(&format!("flushing {}", def.id));
                    let job = store.flush_table(&def.id, scope.clone()).await;
                    if let Some(b) = bar {
                        b.finish_and_clear();
                    }
                    lines.push(job_line(&format!("FLUSH {}", def.id), &job?));
                }
                if lines.is_empty() {
                    lines.push("FLUSH: no tables".into());
                }
                lines.join("\n")
            }
            Command::Compact(id) => {
                let bar = self.spinner(&format!("compacting {id}"));
                let job = store
                    .compact_table(&id, Scope::All, CompactionPolicy::all())
                    .await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                job_line(&format!("COMPACT {id}"), &job?)
            }
            Command::KillJob(id) => {
                store.cancel_job(&id).await?;
                format!("KILL JOB {id}: cancellation requested")
            }
            Command::Export { user, path } => {
                let u = UserId::new(user)?;
                let bar = self.spinner(&format!("exporting {u}"));
                let result =
                    crate::export::export_user(store, &u, std::path::Path::new(&path)).await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let job = result?;
                format!(
                    "EXPORT USER DATA {u}: job {}, {} table(s), {} row(s) to {path}",
                    job.id, job.files, job.rows
                )
            }
            Command::Import { user, path } => {
                let u = UserId::new(user)?;
                let bar = self.spinner(&format!("importing {u}"));
                let result =
                    crate::export::import_user(store, &u, std::path::Path::new(&path)).await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                let job = result?;
                format!(
                    "IMPORT USER DATA {u}: job {}, {} table(s), {} row(s) from {path}",
                    job.id, job.files, job.rows
                )
            }
            other => return Err(invalid(format!("not a maintenance statement: {other:?}"))),
        }))
    }
}
