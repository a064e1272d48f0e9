//! The listener: accepts connections up to the limit, gives each its [`Connection`] (the
//! per-connection state every protocol handler works on), routes CancelRequests to the
//! connection they name, and shuts down gracefully.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use kalamstore::{Store, UserRecord};
use pgwire::api::PgWireServerHandlers;
use pgwire::tokio::process_socket;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig as TlsConfig;
use tokio_util::sync::CancellationToken;

use crate::error::ServerError;
use crate::scram::Exchange;
use crate::{Connector, Login, Statements};

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Connections beyond this many are refused (SQLSTATE 53300).
    pub max_connections: usize,
    /// TLS, when given.
    pub tls: Option<TlsFiles>,
    /// On shutdown, how long running statements may take to finish.
    pub shutdown_grace: Duration,
    /// A connection idle (no statement running, no COPY data) this long is closed.
    pub idle_timeout: Option<Duration>,
}

impl ServerConfig {
    /// Listens on `listen` with 100 connections, no TLS and a 5 s grace.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_connections: 100,
            tls: None,
            shutdown_grace: Duration::from_secs(5),
            idle_timeout: None,
        }
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) connector: Arc<dyn Connector>,
    /// The secret of the decoy verifiers of unknown logins (random per process).
    pub(crate) decoy_secret: [u8; 32],
    next_pid: AtomicI32,
    /// Authenticated connections by (pid, secret key), for CancelRequests.
    cancels: parking_lot::Mutex<HashMap<(i32, i32), Weak<Connection>>>,
    active: AtomicUsize,
}

impl Shared {
    /// Registers `conn` for CancelRequests and returns its (pid, secret key).
    pub(crate) fn register(&self, conn: &Arc<Connection>) -> (i32, i32) {
        debug_assert!(conn.key.lock().is_none(), "a connection registers once");
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        let mut secret = [0u8; 4];
        crate::scram::fill_random(&mut secret);
        let key = (pid, i32::from_be_bytes(secret));
        self.cancels.lock().insert(key, Arc::downgrade(conn));
        *conn.key.lock() = Some(key);
        key
    }

    /// Cancels what the connection `(pid, secret)` is running, if it exists.
    pub(crate) fn cancel(&self, pid: i32, secret: i32) {
        let conn = self
            .cancels
            .lock()
            .get(&(pid, secret))
            .and_then(Weak::upgrade);
        if let Some(conn) = conn {
            conn.cancel_running();
        }
    }
}

/// Where a connection's authentication is.
pub(crate) enum AuthState {
    /// Before the client's first SCRAM message.
    Initial,
    /// The server's first message is sent.
    Challenged {
        exchange: Box<Exchange>,
        name: String,
        record: Option<UserRecord>,
    },
    /// Done, or failed.
    Over,
}

/// An authenticated connection's session.
pub(crate) struct Session {
    pub(crate) login: Login,
    pub(crate) statements: Arc<dyn Statements>,
    /// Its row of `system.sessions`.
    pub(crate) handle: kalamstore::SessionHandle,
}

/// One connection's state: its login, the statement running and the session's settings.
pub(crate) struct Connection {
    pub(crate) shared: Arc<Shared>,
    /// Why the connection is refused at startup (too many connections).
    pub(crate) refused: Option<(&'static str, String)>,
    pub(crate) auth: tokio::sync::Mutex<AuthState>,
    pub(crate) session: OnceLock<Session>,
    /// A handle back to this connection's `Arc`, for registration.
    pub(crate) this: Weak<Connection>,
    key: parking_lot::Mutex<Option<(i32, i32)>>,
    running: parking_lot::Mutex<Option<CancellationToken>>,
    busy: AtomicBool,
    /// When it last did anything (a statement ended, COPY data came).
    pub(crate) last_active: parking_lot::Mutex<Instant>,
    /// `SET` values of the session.
    pub(crate) settings: parking_lot::Mutex<BTreeMap<String, String>>,
    /// Inside `BEGIN` ... `COMMIT`, and whether a statement there wrote.
    pub(crate) transaction: parking_lot::Mutex<Option<bool>>,
    /// The `COPY ... FROM STDIN` in progress.
    pub(crate) copy_in: parking_lot::Mutex<Option<CopyIn>>,
    /// Declared cursors by name.
    pub(crate) cursors: parking_lot::Mutex<HashMap<String, crate::cursor::Cursor>>,
}

/// A `COPY ... FROM STDIN` in progress: where rows go and those not yet written.
pub(crate) struct CopyIn {
    pub(crate) table: String,
    pub(crate) columns: Vec<String>,
    pub(crate) reader: crate::copy::RecordReader,
    pub(crate) rows: Vec<crate::copy::Record>,
    pub(crate) inserted: u64,
}

impl Connection {
    /// Starts a statement: the token a CancelRequest fires; the guard marks it finished.
    pub(crate) fn start_statement(&self, sql: &str) -> (CancellationToken, Busy<'_>) {
        if let Some(session) = self.session.get() {
            session.handle.running(Some(sql));
        }
        let token = CancellationToken::new();
        *self.running.lock() = Some(token.clone());
        self.busy.store(true, Ordering::Release);
        (token, Busy(self))
    }

    fn cancel_running(&self) {
        if let Some(token) = self.running.lock().as_ref() {
            token.cancel();
        }
    }

    pub(crate) fn session(&self) -> Option<&Session> {
        self.session.get()
    }

    /// Records activity that is not a statement (COPY data).
    pub(crate) fn touch(&self) {
        *self.last_active.lock() = Instant::now();
    }

    /// Idle for longer than `limit`: no statement running and nothing since.
    fn idle_for(&self, limit: Duration) -> bool {
        !self.busy.load(Ordering::Acquire) && self.last_active.lock().elapsed() > limit
    }
}

/// Marks a connection's statement finished when dropped.
pub(crate) struct Busy<'a>(&'a Connection);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
        self.0.running.lock().take();
        *self.0.last_active.lock() = Instant::now();
        if let Some(session) = self.0.session.get() {
            session.handle.running(None);
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(session) = self.session.get() {
            tracing::info!(
                "{} ({}) disconnected",
                session.login.name,
                session.login.role.as_str()
            );
        }
        if let Some(key) = self.key.lock().take() {
            self.shared.cancels.lock().remove(&key);
        }
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The handlers of one connection: every protocol handler is the connection itself.
pub(crate) struct Handlers(pub(crate) Arc<Connection>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.0.clone()
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        self.0.clone()
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        self.0.clone()
    }
}

/// A listening server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    config: ServerConfig,
}

impl Server {
    /// Binds `config.listen` and loads the TLS files; `connector` makes each connection's
    /// statements.
    pub async fn bind(
        store: Store,
        connector: Arc<dyn Connector>,
        config: ServerConfig,
    ) -> Result<Self, ServerError> {
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let mut decoy_secret = [0u8; 32];
        crate::scram::fill_random(&mut decoy_secret);
        let shared = Arc::new(Shared {
            store,
            connector,
            decoy_secret,
            next_pid: AtomicI32::new(1000),
            cancels: parking_lot::Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
        });
        Ok(Self {
            listener,
            shared,
            tls,
            config,
        })
    }

    /// The address it listens on (with the port the OS chose for port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: self.config.listen,
                source,
            })
    }

    /// Serves connections until `shutdown` completes; then accepts no more, gives running
    /// statements `shutdown_grace` to finish and closes every connection.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let mut tasks = JoinSet::new();
        let mut connections: Vec<(Weak<Connection>, tokio::task::AbortHandle)> = Vec::new();
        let mut idle_check = tokio::time::interval(Duration::from_secs(1));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = idle_check.tick(), if self.config.idle_timeout.is_some() => {
                    let limit = self.config.idle_timeout.unwrap_or(Duration::MAX);
                    for (conn, task) in &connections {
                        if conn.upgrade().is_some_and(|c| c.idle_for(limit)) {
                            tracing::info!("closing a connection idle for {limit:?}");
                            task.abort();
                        }
                    }
                }
                accepted = self.listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("accepting a connection: {e}");
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    let active = self.shared.active.fetch_add(1, Ordering::AcqRel) + 1;
                    let refused = (active > self.config.max_connections).then(|| {
                        ("53300", "sorry, too many clients already".to_owned())
                    });
                    let conn = Arc::new_cyclic(|this| Connection {
                        shared: self.shared.clone(),
                        refused,
                        auth: tokio::sync::Mutex::new(AuthState::Initial),
                        session: OnceLock::new(),
                        this: this.clone(),
                        key: parking_lot::Mutex::new(None),
                        running: parking_lot::Mutex::new(None),
                        busy: AtomicBool::new(false),
                        last_active: parking_lot::Mutex::new(Instant::now()),
                        settings: parking_lot::Mutex::new(BTreeMap::new()),
                        transaction: parking_lot::Mutex::new(None),
                        copy_in: parking_lot::Mutex::new(None),
                        cursors: parking_lot::Mutex::new(HashMap::new()),
                    });
                    connections.retain(|(c, _)| c.strong_count() > 0);
                    let weak = Arc::downgrade(&conn);
                    let tls = self.tls.clone();
                    let task = tasks.spawn(async move {
                        if let Err(e) = process_socket(socket, tls, Handlers(conn)).await {
                            tracing::debug!("connection from {peer} ended: {e}");
                        }
                    });
                    connections.push((weak, task));
                }
            }
        }
        drop(self.listener);
        let deadline = Instant::now() + self.config.shutdown_grace;
        while Instant::now() < deadline
            && connections
                .iter()
                .filter_map(|(c, _)| c.upgrade())
                .any(|c| c.busy.load(Ordering::Acquire))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }
}

fn load_tls(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |path: &PathBuf, reason: String| ServerError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, "no certificate in the file".into()));
    }
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = TlsConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
