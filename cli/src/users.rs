//! `CREATE USER`, `ALTER USER`, `DROP USER`: the server's logins. A password becomes a
//! SCRAM-SHA-256 verifier here; the catalog never holds the password.

use kalamstore::Role;
use kalamstore_server::scram::Verifier;

use crate::error::{CliError, invalid};
use crate::parse::Command;
use crate::session::{Outcome, Session};

fn role(text: Option<&str>) -> Result<Option<Role>, CliError> {
    match text {
        None => Ok(None),
        Some("operator") => Ok(Some(Role::Operator)),
        Some("user") => Ok(Some(Role::User)),
        Some(other) => Err(invalid(format!(
            "unknown ROLE `{other}` (operator or user)"
        ))),
    }
}

fn verifier(password: &str) -> Result<Vec<u8>, CliError> {
    if password.is_empty() {
        return Err(invalid("a password may not be empty"));
    }
    Ok(Verifier::new(password).encode())
}

impl Session {
    pub(crate) async fn user_command(&self, command: Command) -> Result<Outcome, CliError> {
        match command {
            Command::CreateUser {
                name,
                password,
                role: r,
                if_not_exists,
            } => {
                let r = role(r.as_deref())?.unwrap_or(Role::User);
                match self.store.create_user(&name, r, verifier(&password)?).await {
                    Ok(_) => Ok(Outcome::Done("CREATE ROLE".into())),
                    Err(kalamstore::Error::UserExists { .. }) if if_not_exists => {
                        Ok(Outcome::Done("CREATE ROLE".into()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Command::AlterUser {
                name,
                password,
                role: r,
            } => {
                let v = password.as_deref().map(verifier).transpose()?;
                self.store.alter_user(&name, role(r.as_deref())?, v).await?;
                Ok(Outcome::Done("ALTER ROLE".into()))
            }
            Command::DropUser { name, if_exists } => {
                self.store.drop_user(&name, if_exists).await?;
                Ok(Outcome::Done("DROP ROLE".into()))
            }
            other => Err(invalid(format!("not a user statement: {other:?}"))),
        }
    }
}
