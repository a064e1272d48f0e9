//! Logins and user data: `CREATE`/`ALTER`/`DROP USER`, `EXECUTE AS USER`, `EXPORT`/`IMPORT
//! USER DATA`.

use kalamstore_sql::datafusion::sql::sqlparser;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Location, Token};

use super::{Command, bad, err, expect_word, name, parse, string};
use crate::error::CliError;

/// The rest of `CREATE USER [IF NOT EXISTS] name [WITH] PASSWORD '...' [ROLE r]`.
pub(super) fn create_user(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = name(p)?;
    let (password, role) = user_options(p)?;
    let password = password.ok_or_else(|| bad("CREATE USER needs PASSWORD '...'"))?;
    Ok(Command::CreateUser {
        name,
        password,
        role,
        if_not_exists,
    })
}

/// The rest of `ALTER USER name [WITH] [PASSWORD '...'] [ROLE r]`.
pub(super) fn alter_user(p: &mut Parser<'_>) -> Result<Command, CliError> {
    let name = name(p)?;
    let (password, role) = user_options(p)?;
    if password.is_none() && role.is_none() {
        return Err(bad("ALTER USER needs PASSWORD '...' or ROLE"));
    }
    Ok(Command::AlterUser {
        name,
        password,
        role,
    })
}

/// `[WITH] [PASSWORD '...'] [ROLE operator|user]`, in either order.
fn user_options(p: &mut Parser<'_>) -> Result<(Option<String>, Option<String>), CliError> {
    let _ = p.parse_keyword(Keyword::WITH);
    let (mut password, mut role) = (None, None);
    loop {
        if p.parse_keyword(Keyword::PASSWORD) {
            password = Some(string(p)?);
        } else if p.parse_keyword(Keyword::ROLE) {
            role = Some(name(p)?.to_ascii_lowercase());
        } else {
            return Ok((password, role));
        }
    }
}

/// The rest of `EXPORT USER DATA 'u' TO 'file.zip'`.
pub(super) fn export(p: &mut Parser<'_>) -> Result<Command, CliError> {
    p.expect_keyword(Keyword::USER).map_err(err)?;
    expect_word(p, "DATA")?;
    let user = string(p)?;
    p.expect_keyword(Keyword::TO).map_err(err)?;
    Ok(Command::Export {
        user,
        path: string(p)?,
    })
}

/// The rest of `IMPORT USER DATA 'u' FROM 'file.zip'`.
pub(super) fn import(p: &mut Parser<'_>) -> Result<Command, CliError> {
    p.expect_keyword(Keyword::USER).map_err(err)?;
    expect_word(p, "DATA")?;
    let user = string(p)?;
    p.expect_keyword(Keyword::FROM).map_err(err)?;
    Ok(Command::Import {
        user,
        path: string(p)?,
    })
}

/// `EXECUTE AS USER '<id>' (<statement>)`: the inner statement is the text between the
/// first `(` and the last `)`.
pub(super) fn execute_as(
    sql: &str,
    tokens: &[sqlparser::tokenizer::TokenWithSpan],
    offset: &impl Fn(Location) -> usize,
) -> Result<Command, CliError> {
    let usage = || bad("expected EXECUTE AS USER '<id>' (<statement>)");
    let words: Vec<&sqlparser::tokenizer::TokenWithSpan> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let keyword = |i: usize, k: &str| matches!(words.get(i).map(|t| &t.token), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case(k));
    if !(keyword(0, "EXECUTE") && keyword(1, "AS") && keyword(2, "USER")) {
        return Err(usage());
    }
    let user = match words.get(3).map(|t| &t.token) {
        Some(Token::SingleQuotedString(u)) => u.clone(),
        _ => return Err(usage()),
    };
    let (Some(open), Some(close)) = (words.get(4), words.last()) else {
        return Err(usage());
    };
    if open.token != Token::LParen || close.token != Token::RParen || words.len() < 7 {
        return Err(usage());
    }
    let inner = parse(sql[offset(open.span.end)..offset(close.span.start)].trim())?;
    if matches!(inner, Command::ExecuteAs { .. }) {
        return Err(bad("EXECUTE AS cannot be nested"));
    }
    Ok(Command::ExecuteAs {
        user,
        inner: Box::new(inner),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_parse_beside_create_user_table() {
        assert!(matches!(
            parse("CREATE USER TABLE app.t (id BIGINT PRIMARY KEY)").unwrap(),
            Command::CreateTable {
                kind: kalamstore::TableType::User,
                ..
            }
        ));
        assert_eq!(
            parse("CREATE USER IF NOT EXISTS alice WITH PASSWORD 'p''w' ROLE Operator").unwrap(),
            Command::CreateUser {
                name: "alice".into(),
                password: "p'w".into(),
                role: Some("operator".into()),
                if_not_exists: true,
            }
        );
        assert_eq!(
            parse("ALTER USER alice ROLE user").unwrap(),
            Command::AlterUser {
                name: "alice".into(),
                password: None,
                role: Some("user".into())
            }
        );
        assert_eq!(
            parse("DROP USER IF EXISTS alice").unwrap(),
            Command::DropUser {
                name: "alice".into(),
                if_exists: true
            }
        );
        for (wrong, why) in [
            ("CREATE USER alice", "a password is required"),
            ("ALTER USER alice", "something must change"),
        ] {
            assert!(matches!(parse(wrong), Err(CliError::Parse(_))), "{why}");
        }
    }

    #[test]
    fn user_data_and_execute_as_parse() {
        assert_eq!(
            parse("EXPORT USER DATA 'bob' TO 'bob.zip'").unwrap(),
            Command::Export {
                user: "bob".into(),
                path: "bob.zip".into()
            }
        );
        assert_eq!(
            parse("IMPORT USER DATA 'bob' FROM 'bob.zip'").unwrap(),
            Command::Import {
                user: "bob".into(),
                path: "bob.zip".into()
            }
        );
        let Command::ExecuteAs { user, inner } =
            parse("EXECUTE AS USER 'bob' (UPDATE app.m SET n = (SELECT 1) WHERE id = 2);").unwrap()
        else {
            panic!("EXECUTE AS")
        };
        assert_eq!(user, "bob");
        assert_eq!(
            *inner,
            Command::Sql("UPDATE app.m SET n = (SELECT 1) WHERE id = 2".into())
        );
        assert!(matches!(
            parse(
                "EXECUTE AS USER 'bob' (SELECT * FROM app.m WHERE id > 3 ORDER BY id DESC LIMIT 2)"
            )
            .unwrap(),
            Command::ExecuteAs { .. }
        ));
        assert!(parse("EXECUTE AS USER 'a' (EXECUTE AS USER 'b' (SELECT 1))").is_err());
    }
}
