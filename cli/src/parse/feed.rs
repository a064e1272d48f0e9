//! The change feed: `SUBSCRIBE TO`, `CREATE CONSUMER`, `CONSUME FROM`, `ACK`.

use kalamstore::{ConsumerStart, StartAt};
use kalamstore_sql::SubscribeRequest;
use kalamstore_sql::datafusion::sql::sqlparser;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;

use super::{
    Command, Literal, err, expect_word, ident_word, name, next_word, object, properties, table,
    whole_number,
};
use crate::error::{CliError, invalid};

/// The rest of `SUBSCRIBE TO ...`. The start follows KalamDB: `from_seq_id` (changes after
/// it, no initial data) over `last_rows` (the newest N rows; 0: none) over all matching rows.
pub(super) fn subscribe(p: &mut Parser<'_>) -> Result<Command, CliError> {
    p.expect_keyword(Keyword::TO).map_err(err)?;
    let table = object(p)?;
    let all_users = p.parse_keywords(&[Keyword::FOR, Keyword::ALL]);
    if all_users {
        expect_word(p, "USERS")?;
    }
    let condition = if p.parse_keyword(Keyword::WHERE) {
        Some(p.parse_expr().map_err(err)?.to_string())
    } else {
        None
    };
    let mut request = SubscribeRequest {
        table,
        condition,
        all_users,
        start: StartAt::Snapshot,
        batch_size: None,
    };
    if ident_word(p, "OPTIONS") {
        p.next_token();
        let mut from_seq = None;
        let mut last_rows = None;
        for (key, value) in properties(p)? {
            let n = match &value {
                Literal::Number(n) => n.parse::<u64>().ok(),
                _ => None,
            }
            .ok_or_else(|| invalid(format!("{key} needs a whole number >= 0")))?;
            let n_usize = usize::try_from(n).unwrap_or(usize::MAX);
            match key.as_str() {
                "FROM_SEQ_ID" => from_seq = Some(i64::try_from(n).unwrap_or(i64::MAX)),
                "LAST_ROWS" => last_rows = Some(n_usize),
                "BATCH_SIZE" if n > 0 => request.batch_size = Some(n_usize),
                other => {
                    return Err(invalid(format!(
                        "unknown SUBSCRIBE option `{other}` (LAST_ROWS, FROM_SEQ_ID, \
                         BATCH_SIZE > 0)"
                    )));
                }
            }
        }
        request.start = match (from_seq, last_rows) {
            (Some(seq), _) => StartAt::After(seq),
            (None, Some(0)) => StartAt::Now,
            (None, Some(n)) => StartAt::LastRows(n),
            (None, None) => StartAt::Snapshot,
        };
    }
    Ok(Command::Subscribe(request))
}

/// The rest of `CREATE CONSUMER ...`.
pub(super) fn create_consumer(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let consumer = name(p)?;
    p.expect_keyword(Keyword::ON).map_err(err)?;
    let table = table(p)?;
    let all_users = p.parse_keywords(&[Keyword::FOR, Keyword::ALL]);
    if all_users {
        expect_word(p, "USERS")?;
    }
    let start = if p.parse_keyword(Keyword::FROM) {
        if next_word(p, "EARLIEST") {
            ConsumerStart::Earliest
        } else {
            ConsumerStart::After(i64::try_from(whole_number(p, "FROM")?).unwrap_or(i64::MAX))
        }
    } else {
        ConsumerStart::Now
    };
    Ok(Command::CreateConsumer {
        name: consumer,
        table,
        all_users,
        start,
    })
}

/// The rest of `CONSUME FROM name [LIMIT n]`.
pub(super) fn consume(p: &mut Parser<'_>) -> Result<Command, CliError> {
    p.expect_keyword(Keyword::FROM).map_err(err)?;
    let consumer = name(p)?;
    let limit = if p.parse_keyword(Keyword::LIMIT) {
        Some(whole_number(p, "LIMIT")?)
    } else {
        None
    };
    Ok(Command::Consume {
        name: consumer,
        limit: limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    })
}

/// The rest of `ACK name UPTO seq`.
pub(super) fn ack(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let consumer = name(p)?;
    expect_word(p, "UPTO")?;
    let seq = whole_number(p, "UPTO")?;
    Ok(Command::Ack {
        name: consumer,
        seq: i64::try_from(seq).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, table_id};
    use super::*;

    fn t(name: &str) -> kalamstore::TableId {
        table_id(name).unwrap()
    }

    #[test]
    fn subscriptions_parse() {
        let sub = |sql: &str| match parse(sql).unwrap() {
            Command::Subscribe(r) => r,
            other => panic!("{other:?}"),
        };
        let r = sub("SUBSCRIBE TO app.m");
        assert_eq!(
            (r.table.as_str(), r.condition, r.all_users, r.start),
            ("app.m", None, false, StartAt::Snapshot)
        );
        let r = sub(
            "SUBSCRIBE TO app.m FOR ALL USERS WHERE room = 'r1' AND n > 2 \
             OPTIONS (last_rows = 5, batch_size = 10)",
        );
        assert!(r.all_users);
        assert_eq!(r.condition.as_deref(), Some("room = 'r1' AND n > 2"));
        assert_eq!((r.start, r.batch_size), (StartAt::LastRows(5), Some(10)));
        // `from_seq_id` wins over `last_rows`; `last_rows = 0` is no initial data.
        let r = sub("SUBSCRIBE TO app.m OPTIONS (last_rows = 5, from_seq_id = 42)");
        assert_eq!(r.start, StartAt::After(42));
        assert_eq!(
            sub("SUBSCRIBE TO app.m OPTIONS (last_rows = 0)").start,
            StartAt::Now
        );
        for wrong in [
            "SUBSCRIBE app.m",
            "SUBSCRIBE TO app.m FOR ALL",
            "SUBSCRIBE TO app.m OPTIONS (batch_size = 0)",
            "SUBSCRIBE TO app.m OPTIONS (last_rows = 'x')",
            "SUBSCRIBE TO app.m OPTIONS (last_rows = -1)",
            "SUBSCRIBE TO app.m WHERE",
        ] {
            assert!(parse(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn consumers_parse() {
        assert_eq!(
            parse("CREATE CONSUMER agent ON app.m FOR ALL USERS FROM EARLIEST").unwrap(),
            Command::CreateConsumer {
                name: "agent".into(),
                table: t("app.m"),
                all_users: true,
                start: ConsumerStart::Earliest,
            }
        );
        assert_eq!(
            parse("CREATE CONSUMER agent ON app.m FROM 7").unwrap(),
            Command::CreateConsumer {
                name: "agent".into(),
                table: t("app.m"),
                all_users: false,
                start: ConsumerStart::After(7),
            }
        );
        assert_eq!(
            parse("CONSUME FROM agent LIMIT 10").unwrap(),
            Command::Consume {
                name: "agent".into(),
                limit: Some(10)
            }
        );
        assert_eq!(
            parse("ACK agent UPTO 42").unwrap(),
            Command::Ack {
                name: "agent".into(),
                seq: 42
            }
        );
        assert_eq!(
            parse("DROP CONSUMER IF EXISTS agent").unwrap(),
            Command::DropConsumer {
                name: "agent".into(),
                if_exists: true
            }
        );
        for wrong in [
            "ACK agent 42",
            "CONSUME agent",
            "CREATE CONSUMER agent app.m",
        ] {
            assert!(matches!(parse(wrong), Err(CliError::Parse(_))), "{wrong}");
        }
    }
}
