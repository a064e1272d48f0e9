//! The logins of the server, kept in `sys.users`: name, role and an opaque credential
//! verifier (the server's SCRAM-SHA-256 one). The core stores and lists them; it never sees a
//! password.

use super::{Store, USERS, sys};
use crate::catalog::{Role, UserRecord};
use crate::error::{Error, Result};
use crate::ids::UserId;

impl Store {
    /// Adds a login. Its name must be a valid [`UserId`] (a user role's rows are keyed by it).
    pub async fn create_user(
        &self,
        name: &str,
        role: Role,
        verifier: Vec<u8>,
    ) -> Result<UserRecord> {
        UserId::new(name)?;
        let _ddl = self.inner.ddl.lock().await;
        if self.find_user(name).await?.is_some() {
            return Err(Error::UserExists {
                name: name.to_owned(),
            });
        }
        let now = self.now_ms();
        let record = UserRecord {
            name: name.to_owned(),
            role,
            verifier,
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.put_user(&record).await?;
        Ok(record)
    }

    /// Changes a login's verifier (a new password) and/or role.
    pub async fn alter_user(
        &self,
        name: &str,
        role: Option<Role>,
        verifier: Option<Vec<u8>>,
    ) -> Result<UserRecord> {
        let _ddl = self.inner.ddl.lock().await;
        let mut record = self.user(name).await?;
        if let Some(role) = role {
            record.role = role;
        }
        if let Some(verifier) = verifier {
            record.verifier = verifier;
        }
        record.updated_at_ms = self.now_ms();
        self.put_user(&record).await?;
        Ok(record)
    }

    /// Removes a login (its rows stay: they belong to the user id, not to the login).
    pub async fn drop_user(&self, name: &str, if_exists: bool) -> Result<()> {
        let _ddl = self.inner.ddl.lock().await;
        match self.find_user(name).await? {
            Some(_) => {}
            None if if_exists => return Ok(()),
            None => {
                return Err(Error::UserNotFound {
                    name: name.to_owned(),
                });
            }
        }
        self.inner.system.delete(&sys(USERS), name.as_bytes()).await
    }

    /// A login's record.
    pub async fn user(&self, name: &str) -> Result<UserRecord> {
        self.find_user(name)
            .await?
            .ok_or_else(|| Error::UserNotFound {
                name: name.to_owned(),
            })
    }

    /// A login's record, if there is one.
    pub async fn find_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.inner
            .system
            .get(&sys(USERS), name.as_bytes())
            .await?
            .map(|bytes| UserRecord::decode(&bytes))
            .transpose()
    }

    /// Every login, by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>> {
        self.catalog(USERS, |_, v| UserRecord::decode(v)).await
    }

    async fn put_user(&self, u: &UserRecord) -> Result<()> {
        self.inner
            .system
            .put(&sys(USERS), u.name.clone().into(), u.encode().into())
            .await
    }
}
