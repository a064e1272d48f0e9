//! What a session may run: everything in the embedded shell; on the server, everything for an
//! operator (local files only inside the server's `--files-dir`) and, for a user, its own rows
//! and SHARED/STREAM tables through queries, DML, subscriptions and consumers.

use std::path::{Component, Path, PathBuf};

use crate::error::CliError;
use crate::parse::{Command, StorageKind};

/// What a session may do beyond reading and writing rows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Access {
    /// The embedded shell: every statement, local files anywhere.
    #[default]
    Local,
    /// A server operator: every statement; files only inside `files_dir` (none without one).
    Operator {
        /// Where `EXPORT`/`IMPORT` and filesystem storages may read and write.
        files_dir: Option<PathBuf>,
    },
    /// A server user: queries, DML, subscriptions and consumers of its own rows.
    User,
}

fn forbidden(what: &str) -> CliError {
    CliError::Forbidden(format!("permission denied: {what} needs an operator"))
}

impl Access {
    /// `command` as this session may run it (its file paths resolved inside the files
    /// directory), or why it may not.
    pub(crate) fn confine(&self, command: Command) -> Result<Command, CliError> {
        match self {
            Self::Local => Ok(command),
            Self::User => match command {
                Command::ExecuteAs { .. } => Err(forbidden("EXECUTE AS USER")),
                Command::Subscribe(r) if r.all_users => Err(forbidden("FOR ALL USERS")),
                Command::CreateConsumer {
                    all_users: true, ..
                } => Err(forbidden("FOR ALL USERS")),
                c @ (Command::Sql(_)
                | Command::Subscribe(_)
                | Command::CreateConsumer { .. }
                | Command::Consume { .. }
                | Command::Ack { .. }
                | Command::DropConsumer { .. }
                | Command::ShowNamespaces
                | Command::ShowTables(_)
                | Command::Describe(_)
                | Command::ShowLiveQueries
                | Command::ShowConsumers
                | Command::ShowUsers) => Ok(c),
                Command::Export { .. }
                | Command::Import { .. }
                | Command::CopyFrom { .. }
                | Command::CopyTo { .. } => {
                    Err(forbidden("reading or writing files on the server"))
                }
                other => Err(forbidden(&format!("`{}`", statement_name(&other)))),
            },
            Self::Operator { files_dir } => {
                let inside = |path: String| match files_dir {
                    Some(dir) => confined(dir, &path),
                    None => Err(CliError::Forbidden(
                        "permission denied: the server was started without --files-dir, so \
                         no statement reads or writes its files"
                            .into(),
                    )),
                };
                Ok(match command {
                    Command::Export { user, path } => Command::Export {
                        user,
                        path: inside(path)?,
                    },
                    Command::Import { user, path } => Command::Import {
                        user,
                        path: inside(path)?,
                    },
                    Command::CopyFrom {
                        table,
                        columns,
                        path,
                        format,
                    } => Command::CopyFrom {
                        table,
                        columns,
                        path: inside(path)?,
                        format,
                    },
                    Command::CopyTo {
                        query,
                        path,
                        format,
                    } => Command::CopyTo {
                        query,
                        path: inside(path)?,
                        format,
                    },
                    Command::CreateStorage {
                        id,
                        kind,
                        path: Some(path),
                        engine,
                        cache,
                        metadata_cache,
                        config,
                    } if kind == StorageKind::Filesystem => Command::CreateStorage {
                        id,
                        kind,
                        path: Some(inside(path)?),
                        engine,
                        cache,
                        metadata_cache,
                        config,
                    },
                    Command::ExecuteAs { user, inner } => Command::ExecuteAs {
                        user,
                        inner: Box::new(self.confine(*inner)?),
                    },
                    other => other,
                })
            }
        }
    }
}

/// `path` resolved inside `dir`: relative, without `..`, so it cannot leave it.
fn confined(dir: &Path, path: &str) -> Result<String, CliError> {
    let p = Path::new(path);
    let escapes = p
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes || path.is_empty() {
        return Err(CliError::Forbidden(format!(
            "permission denied: `{path}` must be a relative path inside the server's files \
             directory (no `..`, no absolute path)"
        )));
    }
    Ok(dir.join(p).to_string_lossy().into_owned())
}

/// A statement's leading words, for messages.
fn statement_name(command: &Command) -> &'static str {
    match command {
        Command::CreateStorage { .. } => "CREATE STORAGE",
        Command::DropStorage { .. } => "DROP STORAGE",
        Command::StorageCheck(_) => "STORAGE CHECK",
        Command::CreateNamespace { .. } => "CREATE NAMESPACE",
        Command::DropNamespace { .. } => "DROP NAMESPACE",
        Command::CreateTable { .. } => "CREATE TABLE",
        Command::AlterTable { .. } => "ALTER TABLE",
        Command::DropTable { .. } => "DROP TABLE",
        Command::Flush { .. } => "STORAGE FLUSH",
        Command::Compact(_) => "STORAGE COMPACT",
        Command::KillJob(_) => "KILL JOB",
        Command::KillLiveQuery(_) => "KILL LIVE QUERY",
        Command::CreateUser { .. } => "CREATE USER",
        Command::AlterUser { .. } => "ALTER USER",
        Command::DropUser { .. } => "DROP USER",
        Command::ShowStorages => "SHOW STORAGES",
        Command::ShowManifest(_) => "SHOW MANIFEST",
        Command::ShowStats(_) => "SHOW STATS",
        Command::ShowCacheStats => "SHOW STATS",
        _ => "this statement",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    fn check(access: &Access, sql: &str) -> Result<Command, CliError> {
        access.confine(parse(sql).unwrap())
    }

    #[test]
    fn a_user_runs_row_statements_only() {
        let user = Access::User;
        for ok in [
            "SELECT * FROM app.m",
            "INSERT INTO app.m VALUES (1)",
            "SUBSCRIBE TO app.m",
            "SHOW TABLES",
            "CREATE CONSUMER c ON app.m",
        ] {
            assert!(check(&user, ok).is_ok(), "{ok}");
        }
        for refused in [
            "EXECUTE AS USER 'bob' (SELECT * FROM app.m)",
            "SUBSCRIBE TO app.m FOR ALL USERS",
            "CREATE CONSUMER c ON app.m FOR ALL USERS",
            "EXPORT USER DATA 'alice' TO 'a.zip'",
            "IMPORT USER DATA 'alice' FROM 'a.zip'",
            "COPY app.m FROM 'rows.csv'",
            "COPY (SELECT 1) TO 'out.csv'",
            "CREATE STORAGE s TYPE filesystem PATH '/tmp/x'",
            "DROP TABLE app.m",
            "STORAGE FLUSH ALL",
            "CREATE USER bob WITH PASSWORD 'x'",
            "KILL LIVE QUERY 'q1'",
        ] {
            let e = check(&user, refused).unwrap_err();
            assert!(matches!(e, CliError::Forbidden(_)), "{refused}: {e}");
        }
    }

    #[test]
    fn an_operator_s_paths_stay_inside_the_files_dir() {
        let op = Access::Operator {
            files_dir: Some(PathBuf::from("/srv/files")),
        };
        match check(&op, "EXPORT USER DATA 'alice' TO 'out/a.zip'").unwrap() {
            Command::Export { path, .. } => assert_eq!(path, "/srv/files/out/a.zip"),
            other => panic!("{other:?}"),
        }
        for escape in [
            "EXPORT USER DATA 'alice' TO '/etc/a.zip'",
            "EXPORT USER DATA 'alice' TO '../a.zip'",
            "IMPORT USER DATA 'alice' FROM 'x/../../a.zip'",
            "COPY app.m FROM '/etc/passwd'",
            "CREATE STORAGE s TYPE filesystem PATH '/var/lib/x'",
            "EXECUTE AS USER 'bob' (EXPORT USER DATA 'bob' TO '../b.zip')",
        ] {
            let e = check(&op, escape).unwrap_err();
            assert!(matches!(e, CliError::Forbidden(_)), "{escape}: {e}");
        }
        let none = Access::Operator { files_dir: None };
        assert!(matches!(
            check(&none, "EXPORT USER DATA 'alice' TO 'a.zip'"),
            Err(CliError::Forbidden(_))
        ));
        assert!(check(&none, "DROP TABLE IF EXISTS app.m").is_ok());
    }
}
