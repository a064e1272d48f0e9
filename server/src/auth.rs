//! The startup phase: SCRAM-SHA-256 against the logins of the catalog, then the session of
//! the login. An unknown login runs the same exchange against a decoy verifier and fails
//! like a wrong password (28P01), so names cannot be probed. Also the first operator, `root`.

use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use kalamstore::{Role, SessionInfo, Store, UserRecord};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, METADATA_APPLICATION_NAME, METADATA_USER, PgWireConnectionState};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::error::ServerError;
use crate::scram::{Exchange, ScramError, Verifier};
use crate::server::{AuthState, Connection, Session};
use crate::{Login, StatementError};

const MECHANISM: &str = "SCRAM-SHA-256";

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for Connection {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                if let Some((code, message)) = &self.refused {
                    return Err(fatal(code, message.clone()));
                }
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![MECHANISM.to_owned()],
                    )))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let mut state = self.auth.lock().await;
                match std::mem::replace(&mut *state, AuthState::Over) {
                    AuthState::Initial => {
                        let initial = msg.into_sasl_initial_response()?;
                        if initial.auth_method != MECHANISM {
                            return Err(PgWireError::UnsupportedSASLAuthMethod(
                                initial.auth_method,
                            ));
                        }
                        let name = client
                            .metadata()
                            .get(METADATA_USER)
                            .cloned()
                            .ok_or(PgWireError::UserNameRequired)?;
                        let record = self
                            .shared
                            .store
                            .find_user(&name)
                            .await
                            .map_err(|e| fatal("XX000", e.report()))?;
                        let verifier = record
                            .as_ref()
                            .and_then(|r| Verifier::decode(&r.verifier).ok())
                            .unwrap_or_else(|| Verifier::decoy(&name, &self.shared.decoy_secret));
                        let data = initial.data.unwrap_or_default();
                        let (exchange, server_first) =
                            Exchange::start(&data, verifier).map_err(scram_error)?;
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(Bytes::from(server_first)),
                            ))
                            .await?;
                        *state = AuthState::Challenged {
                            exchange: Box::new(exchange),
                            name,
                            record,
                        };
                    }
                    AuthState::Challenged {
                        exchange,
                        name,
                        record,
                    } => {
                        let response = msg.into_sasl_response()?;
                        let server_final = match (exchange.finish(&response.data), &record) {
                            (Ok(f), Some(_)) => f,
                            (Ok(_) | Err(ScramError::WrongPassword), _) => {
                                tracing::info!("password authentication failed for {name}");
                                return Err(PgWireError::InvalidPassword(name));
                            }
                            (Err(e), _) => return Err(scram_error(e)),
                        };
                        let Some(record) = record else {
                            return Err(PgWireError::InvalidPassword(name));
                        };
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLFinal(Bytes::from(server_final)),
                            ))
                            .await?;
                        self.open_session(client, record).await?;
                    }
                    AuthState::Over => return Err(PgWireError::InvalidSASLState),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Connection {
    /// After a verified proof: the login's statements, a cancel key, and ready for queries.
    async fn open_session<C>(&self, client: &mut C, record: UserRecord) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let login = Login {
            name: record.name,
            role: record.role,
        };
        let statements = self
            .shared
            .connector
            .connect(&login)
            .await
            .map_err(|StatementError { code, message }| fatal(code, message))?;
        tracing::info!(
            "{} ({}) connected from {}",
            login.name,
            login.role.as_str(),
            client.socket_addr()
        );
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = format!("16.0 (kalamstore {})", env!("CARGO_PKG_VERSION"));
        parameters.is_superuser = login.role == Role::Operator;
        parameters.session_authorization = Some(login.name.clone());
        let pid = match self.this.upgrade() {
            Some(this) => {
                let (pid, secret) = self.shared.register(&this);
                client.set_pid_and_secret_key(pid, SecretKey::I32(secret));
                pid
            }
            None => 0,
        };
        let handle = self.shared.store.register_session(SessionInfo {
            id: i64::from(pid),
            user: login.name.clone(),
            role: login.role.as_str().to_owned(),
            client: client.socket_addr().to_string(),
            application: client
                .metadata()
                .get(METADATA_APPLICATION_NAME)
                .cloned()
                .unwrap_or_default(),
            connected_at_ms: 0,
            statement: None,
            statement_started_at_ms: None,
        });
        let _ = self.session.set(Session {
            login,
            statements,
            handle,
        });
        finish_authentication(client, &parameters).await
    }
}

fn scram_error(e: ScramError) -> PgWireError {
    match e {
        ScramError::WrongPassword => fatal("28P01", "password authentication failed"),
        ScramError::Malformed(_) | ScramError::BadVerifier => fatal("08P01", e.to_string()),
    }
}

/// Creates the first operator, `root`, from `password` when the catalog has no operator yet;
/// true when it did. Without a password and without any login, the caller should listen on
/// loopback only and say how to set one.
pub async fn ensure_root(store: &Store, password: Option<&str>) -> Result<bool, ServerError> {
    let users = store.users().await?;
    if users.iter().any(|u| u.role == Role::Operator) {
        return Ok(false);
    }
    let Some(password) = password else {
        return Ok(false);
    };
    if password.is_empty() {
        return Err(ServerError::Unsafe("the root password is empty".into()));
    }
    match store.find_user("root").await? {
        Some(_) => {
            store
                .alter_user(
                    "root",
                    Some(Role::Operator),
                    Some(Verifier::new(password).encode()),
                )
                .await?;
        }
        None => {
            store
                .create_user("root", Role::Operator, Verifier::new(password).encode())
                .await?;
        }
    }
    Ok(true)
}
