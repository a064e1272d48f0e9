//! Durable change-feed consumers: a named cursor over one table's changes (one user's, or
//! every user's for an agent), kept in `sys.consumers`. `consume` returns the changes after
//! the acknowledged cursor and moves nothing; `ack` moves it. A consumer that restarts before
//! acknowledging gets the same changes again: delivery is at-least-once, without gaps.

use super::{CONSUMERS, Store, sys};
use crate::catalog::ConsumerRecord;
use crate::changes::ChangePage;
use crate::error::{Error, Result};
use crate::ids::{TableId, UserId, validate_name};

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumerStart {
    /// After the changes committed so far.
    #[default]
    Now,
    /// At the oldest change the log holds.
    Earliest,
    /// After this `_seq`.
    After(i64),
}

impl Store {
    /// Creates a consumer of `table`'s changes: `user`'s, or every user's (`all_users`, an
    /// operator's), or a SHARED/STREAM table's. Fails when the name is taken, the table keeps
    /// no change log, or the scope does not fit the table.
    pub async fn create_consumer(
        &self,
        name: &str,
        table: &TableId,
        user: Option<&UserId>,
        all_users: bool,
        start: ConsumerStart,
    ) -> Result<ConsumerRecord> {
        validate_name("consumer", name)?;
        let _ddl = self.inner.ddl.lock().await;
        if self.consumer(name).await.is_ok() {
            return Err(Error::ConsumerExists {
                name: name.to_owned(),
            });
        }
        // Checks the table, its log and the scope, and reads where the log is now.
        let (committed, earliest) = match self.changes_since(table, user, all_users, 0, 1).await {
            Ok(page) => (page.committed, 0),
            Err(Error::ChangeGap { oldest, .. }) => {
                let page = self
                    .changes_since(table, user, all_users, oldest - 1, 1)
                    .await?;
                (page.committed, oldest - 1)
            }
            Err(e) => return Err(e),
        };
        let acked = match start {
            ConsumerStart::Now => committed,
            ConsumerStart::Earliest => earliest,
            ConsumerStart::After(seq) => {
                // A cursor past retention is refused now rather than at the first read.
                self.changes_since(table, user, all_users, seq, 1).await?;
                seq
            }
        };
        let now = self.now_ms();
        let record = ConsumerRecord {
            name: name.to_owned(),
            table: table.clone(),
            user: user.cloned(),
            all_users,
            acked,
            created_at_ms: now,
            acked_at_ms: now,
        };
        self.put_consumer(&record).await?;
        Ok(record)
    }

    /// A consumer's record.
    pub async fn consumer(&self, name: &str) -> Result<ConsumerRecord> {
        let bytes = self
            .inner
            .system
            .get(&sys(CONSUMERS), name.as_bytes())
            .await?
            .ok_or_else(|| Error::ConsumerNotFound {
                name: name.to_owned(),
            })?;
        ConsumerRecord::decode(&bytes)
    }

    /// Every consumer, by name.
    pub async fn consumers(&self) -> Result<Vec<ConsumerRecord>> {
        self.catalog(CONSUMERS, |_, v| ConsumerRecord::decode(v))
            .await
    }

    /// The changes after the consumer's acknowledged cursor, at most `limit`; moves nothing.
    /// Past the log's retention it is [`Error::ChangeGap`] (re-create the consumer after
    /// re-reading the table).
    pub async fn consume(&self, name: &str, limit: usize) -> Result<ChangePage> {
        let c = self.consumer(name).await?;
        self.changes_since(&c.table, c.user.as_ref(), c.all_users, c.acked, limit)
            .await
    }

    /// Acknowledges every change up to `seq`: later `consume` calls start after it. A cursor
    /// never moves back; one past the table's last committed change is refused.
    pub async fn ack(&self, name: &str, seq: i64) -> Result<ConsumerRecord> {
        let _ddl = self.inner.ddl.lock().await;
        let mut c = self.consumer(name).await?;
        let committed = self.handle(&c.table).await?.feed.committed();
        if seq > committed {
            return Err(Error::InvalidValue {
                column: "seq".into(),
                reason: format!(
                    "consumer {name}: {seq} is past the last committed change ({committed})"
                ),
            });
        }
        if seq > c.acked {
            c.acked = seq;
            c.acked_at_ms = self.now_ms();
            self.put_consumer(&c).await?;
        }
        Ok(c)
    }

    /// Removes a consumer.
    pub async fn drop_consumer(&self, name: &str, if_exists: bool) -> Result<()> {
        let _ddl = self.inner.ddl.lock().await;
        match self.consumer(name).await {
            Ok(_) => {}
            Err(Error::ConsumerNotFound { .. }) if if_exists => return Ok(()),
            Err(e) => return Err(e),
        }
        self.inner
            .system
            .delete(&sys(CONSUMERS), name.as_bytes())
            .await
    }

    async fn put_consumer(&self, c: &ConsumerRecord) -> Result<()> {
        self.inner
            .system
            .put(&sys(CONSUMERS), c.name.clone().into(), c.encode().into())
            .await
    }
}
