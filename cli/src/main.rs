//! `kalamstore`: a shell speaking kalamstore's SQL dialect over an embedded data directory.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser as _;
use kalamstore::UserId;

use kalamstore_cli::{CliError, Format, Outcome, Session, note, output, parse};

/// mimalloc: write batches allocate and free many small values (see the workspace manifest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use kalamstore_cli::VERSION;

/// kalamstore: SQL over an embedded multi-tenant storage engine.
#[derive(Debug, clap::Parser)]
#[command(name = "kalamstore", version = VERSION)]
struct Args {
    /// The data directory.
    #[arg(long, default_value = "./kalamstore-data")]
    data_dir: PathBuf,
    /// Whose rows USER tables show.
    #[arg(long)]
    user: Option<String>,
    /// How query results are printed.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// A statement to run (repeatable); no shell.
    #[arg(short = 'c', long = "command")]
    commands: Vec<String>,
    /// A script to run; no shell.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Values of `$1, $2, ...`, in order.
    #[arg(long = "param")]
    params: Vec<String>,
    /// Read every user's rows of USER tables, with a `_user` column (an operator's view;
    /// writes to USER tables still need a user).
    #[arg(long, conflicts_with = "user")]
    all_users: bool,
    /// The storage of tables created without `STORAGE_ID` (default `local`).
    #[arg(long)]
    storage: Option<String>,
    /// End a `SUBSCRIBE` after this many rows.
    #[arg(long, value_name = "N")]
    until_rows: Option<u64>,
    /// End a `SUBSCRIBE` after this many seconds (it otherwise runs until Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Run every statement and fail at the end instead of at the first error.
    #[arg(long)]
    continue_on_error: bool,
    /// After `-c`/`--file`, run the maintenance that is due (flush policies, STREAM expiry,
    /// cleanup) for at most this many seconds before exiting; 0 skips it.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    maintain_budget: u64,
    /// Keep at most this many finished job records.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    keep_jobs: usize,
    /// Remove finished job records older than this.
    #[arg(long, default_value_t = 24 * 3600, value_name = "SECONDS")]
    job_retention: u64,
    /// Run the cleanup job (job retention, orphaned files, expired STREAM rows) at most this
    /// often.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    cleanup_interval: u64,
    #[command(subcommand)]
    action: Option<Action>,
}

/// What to do instead of statements or the shell.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Run all due maintenance once and exit (for cron): flushes the tables whose policy asks
    /// for it, removes expired STREAM rows and runs the cleanup job when due.
    Maintain,
    /// Serve the data directory over the Postgres wire protocol (psql, psycopg, JDBC, ...)
    /// until SIGTERM or Ctrl-C. The first start creates the operator `root` from
    /// `KALAMSTORE_ROOT_PASSWORD`.
    Serve(ServeArgs),
}

/// `kalamstore serve` options.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:5433")]
    listen: std::net::SocketAddr,
    /// The only directory statements may read and write files in (EXPORT, IMPORT, filesystem
    /// storages); without it they are refused.
    #[arg(long)]
    files_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM); with --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Connections beyond this many are refused.
    #[arg(long, default_value_t = 100)]
    max_connections: usize,
    /// On shutdown, how long running statements may take to finish.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    shutdown_grace: f64,
    /// Close connections idle this long (no statement running); 0 never.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    idle_timeout: f64,
}

/// The environment variable the first operator's password comes from.
const ROOT_PASSWORD_ENV: &str = "KALAMSTORE_ROOT_PASSWORD";

/// Resolves on SIGTERM or Ctrl-C; a second one exits at once (acknowledged writes are already
/// durable in the engines' logs).
async fn shutdown_signal() {
    let first = async {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    first.await;
    note("shutting down: no new connections; running statements may finish (again to exit now)");
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            note("exiting now");
            std::process::exit(130);
        }
    });
}

async fn serve(store: &kalamstore::Store, args: &ServeArgs) -> ExitCode {
    let password = std::env::var(ROOT_PASSWORD_ENV).ok();
    match kalamstore_server::ensure_root(store, password.as_deref()).await {
        Ok(true) => note("created the operator `root` from KALAMSTORE_ROOT_PASSWORD"),
        Ok(false) => {}
        Err(e) => {
            note(&format!("error: {e}"));
            return ExitCode::FAILURE;
        }
    }
    let has_logins = match store.users().await {
        Ok(u) => !u.is_empty(),
        Err(e) => {
            note(&format!("error: {}", CliError::from(e)));
            return ExitCode::FAILURE;
        }
    };
    if !has_logins {
        if !args.listen.ip().is_loopback() {
            note(&format!(
                "error: no login exists yet, so nothing can be checked: set {ROOT_PASSWORD_ENV} \
                 to create the operator `root`, or listen on a loopback address"
            ));
            return ExitCode::FAILURE;
        }
        note(&format!(
            "no login exists: set {ROOT_PASSWORD_ENV} and restart to create the operator `root` \
             (listening on loopback only)"
        ));
    }
    if let Some(dir) = &args.files_dir
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        note(&format!("error: creating {}: {e}", dir.display()));
        return ExitCode::FAILURE;
    }
    let files_dir = match args
        .files_dir
        .as_ref()
        .map(std::fs::canonicalize)
        .transpose()
    {
        Ok(d) => d,
        Err(e) => {
            note(&format!("error: --files-dir: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let mut config = kalamstore_server::ServerConfig::new(args.listen);
    config.max_connections = args.max_connections;
    config.shutdown_grace = Duration::from_secs_f64(args.shutdown_grace.max(0.0));
    config.idle_timeout =
        (args.idle_timeout > 0.0).then(|| Duration::from_secs_f64(args.idle_timeout));
    config.tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(kalamstore_server::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let connector = Arc::new(kalamstore_cli::serve::ServeConnector {
        store: store.clone(),
        files_dir,
    });
    let server = match kalamstore_server::Server::bind(store.clone(), connector, config).await {
        Ok(s) => s,
        Err(e) => {
            note(&format!("error: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match server.local_addr() {
        Ok(addr) => note(&format!(
            "kalamstore {VERSION} serving {} on {addr}{}",
            store.data_dir().display(),
            if args.tls_cert.is_some() {
                " (TLS)"
            } else {
                ""
            }
        )),
        Err(e) => note(&format!("error: {e}")),
    }
    match server.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note(&format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Runs due maintenance within `budget` and says what it did (the cleanup job only when
/// `verbose`); false when some of it failed.
async fn maintain(store: &kalamstore::Store, budget: Duration, verbose: bool) -> bool {
    match store.maintain(budget).await {
        Ok(done) => {
            let mut parts = Vec::new();
            if done.flushes > 0 {
                parts.push(format!(
                    "{} flush(es) of {} rows",
                    done.flushes, done.rows_flushed
                ));
            }
            if done.stream_rows_expired > 0 {
                parts.push(format!(
                    "{} expired STREAM rows removed",
                    done.stream_rows_expired
                ));
            }
            if let Some(job) = done.cleanup.as_ref().filter(|_| verbose) {
                parts.push(format!(
                    "cleanup {}",
                    job.summary.as_deref().unwrap_or("done")
                ));
            }
            if done.tables_skipped > 0 {
                parts.push(format!(
                    "{} table(s) left for the next run (budget spent)",
                    done.tables_skipped
                ));
            }
            if done.failures > 0 {
                parts.push(format!("{} failure(s), logged above", done.failures));
            }
            if !parts.is_empty() {
                note(&format!("maintenance: {}", parts.join("; ")));
            }
            done.failures == 0
        }
        Err(e) => {
            note(&format!("maintenance: {}", CliError::from(e)));
            false
        }
    }
}

/// A statement with where it came from, for error messages.
struct Source {
    sql: String,
    origin: String,
}

fn elapsed(start: Instant) -> String {
    let ms = start.elapsed().as_millis();
    if ms == 0 {
        "<1 ms".into()
    } else {
        format!("{ms} ms")
    }
}

async fn run_one(session: &Session, format: Format, sql: &str) -> Result<(), CliError> {
    let start = Instant::now();
    let command = parse::parse(sql)?;
    let printed = match session.execute(command).await? {
        Outcome::Done(summary) => Ok(summary),
        Outcome::Rows(rows) => output::print(rows, format, &mut std::io::stdout().lock()).await,
        Outcome::Live(rows) => {
            let limits = session.live_limits();
            output::print_live(rows, format, &mut std::io::stdout().lock(), limits).await
        }
    };
    let summary = match printed {
        Ok(summary) => summary,
        // A reader that went away (`| head`) is not an error.
        Err(CliError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    note(&format!("{summary} ({})", elapsed(start)));
    Ok(())
}

async fn run_batch(session: &Session, args: &Args, sources: Vec<Source>) -> ExitCode {
    let mut failed = 0usize;
    let bar = (session.progress && sources.len() > 50).then(|| {
        let b = indicatif::ProgressBar::new(sources.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} statements")
                .expect("a valid template"),
        );
        b
    });
    for s in &sources {
        if let Err(e) = run_one(session, args.format, &s.sql).await {
            note(&format!("error at {}: {e}", s.origin));
            failed += 1;
            if !args.continue_on_error {
                return ExitCode::FAILURE;
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if failed > 0 {
        note(&format!("{failed} statement(s) failed"));
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn sources(args: &Args) -> Result<Vec<Source>, String> {
    let mut out = Vec::new();
    for (i, c) in args.commands.iter().enumerate() {
        let parts = parse::split(c).map_err(|e| format!("-c #{}: {e}", i + 1))?;
        for p in parts {
            out.push(Source {
                sql: p.sql,
                origin: format!("-c #{} line {}", i + 1, p.line),
            });
        }
    }
    if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let parts = parse::split(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        for p in parts {
            out.push(Source {
                sql: p.sql,
                origin: format!("{}:{}", file.display(), p.line),
            });
        }
    }
    Ok(out)
}

const HELP: &str = "\
statements end with `;`. Shell commands:
  \\help        this help
  \\dt [ns]     list tables
  \\d ns.t      describe a table
  \\q           quit
kalamstore statements: CREATE/DROP NAMESPACE, CREATE [USER|SHARED|STREAM] TABLE, ALTER TABLE,
     DROP TABLE, CREATE/DROP/SHOW STORAGE(S), STORAGE CHECK|FLUSH|COMPACT, SHOW TABLES|NAMESPACES,
     DESCRIBE, SHOW MANIFEST|STATS FOR, KILL JOB, EXPORT USER DATA, EXECUTE AS USER '<id>' (...)
SQL (DataFusion): SELECT (joins, GROUP BY, window functions, CTEs, subqueries), INSERT,
     UPDATE, DELETE, EXPLAIN; tables `ns.table`, `ns.table$meta` (with _seq, _updated),
     system.* and information_schema.*";

async fn shell(session: &Session, format: Format) -> ExitCode {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            note(&format!("cannot start the shell: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let history = session.store.data_dir().join(".kalamstore_history");
    let _ = editor.load_history(&history);
    note(&format!(
        "kalamstore {VERSION} — \\help for help, \\q to quit"
    ));
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "kalamstore> "
        } else {
            "        ...> "
        };
        let line = match editor.readline(prompt) {
            Ok(l) => l,
            Err(rustyline::error::ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(_) => break,
        };
        let trimmed = line.trim();
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            let mut words = trimmed.split_whitespace();
            let sql = match (words.next(), words.next()) {
                (Some("\\q"), _) => break,
                (Some("\\help" | "\\h" | "\\?"), _) => {
                    note(HELP);
                    continue;
                }
                (Some("\\dt"), Some(ns)) => format!("SHOW TABLES IN {ns}"),
                (Some("\\dt"), None) => "SHOW TABLES".into(),
                (Some("\\d"), Some(t)) => format!("DESCRIBE TABLE {t}"),
                _ => {
                    note("unknown command; \\help lists them");
                    continue;
                }
            };
            if let Err(e) = run_one(session, format, &sql).await {
                note(&format!("error: {e}"));
            }
            continue;
        }
        buffer.push_str(&line);
        buffer.push('\n');
        let parts = match parse::split(&buffer) {
            Ok(p) => p,
            Err(e) => {
                note(&format!("error: {e}"));
                buffer.clear();
                continue;
            }
        };
        if !buffer.trim_end().ends_with(';') {
            continue;
        }
        let _ = editor.add_history_entry(buffer.trim());
        buffer.clear();
        for p in parts {
            if let Err(e) = run_one(session, format, &p.sql).await {
                note(&format!("error: {e}"));
            }
        }
    }
    let _ = editor.save_history(&history);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Failures of background work (a flush policy, STREAM expiry) go to stderr as warnings.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            note(&format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let user = match args.user.clone().map(UserId::new).transpose() {
            Ok(u) => u,
            Err(e) => {
                note(&format!("--user: {e}"));
                return ExitCode::FAILURE;
            }
        };
        let sources = match sources(&args) {
            Ok(s) => s,
            Err(e) => {
                note(&format!("error: {e}"));
                return ExitCode::FAILURE;
            }
        };
        // A shell keeps the background scheduler; one-shot runs do their due maintenance at
        // exit instead (`--maintain-budget`), so buffers and job records stay bounded.
        let serving = matches!(args.action, Some(Action::Serve(_)));
        let one_shot =
            (args.action.is_some() && !serving) || !args.commands.is_empty() || args.file.is_some();
        let mut config =
            kalamstore::StoreConfig::new(&args.data_dir, Arc::new(kalamstore::Engines::default()));
        config.background = !one_shot;
        config.job_retention_count = args.keep_jobs;
        config.job_retention = Duration::from_secs(args.job_retention);
        config.cleanup_interval = Duration::from_secs(args.cleanup_interval);
        let store = match kalamstore::Store::open(config).await {
            Ok(s) => s,
            Err(e) => {
                note(&format!(
                    "cannot open {}: {}",
                    args.data_dir.display(),
                    CliError::from(e)
                ));
                return ExitCode::FAILURE;
            }
        };
        let session = match Session::new(
            store.clone(),
            user,
            args.all_users,
            args.params.clone(),
            std::io::stderr().is_terminal(),
        )
        .and_then(|s| match &args.storage {
            Some(id) => Ok(s.with_default_storage(kalamstore::StorageId::new(id)?)),
            None => Ok(s),
        })
        .and_then(|s| {
            let time = match args.timeout {
                Some(t) if !(t >= 0.0 && t.is_finite()) => {
                    return Err(CliError::Parse(format!(
                        "--timeout {t} is not a number of seconds"
                    )));
                }
                t => t.map(Duration::from_secs_f64),
            };
            Ok(s.with_live_limits(output::LiveLimits {
                rows: args.until_rows,
                time,
            }))
        }) {
            Ok(s) => s,
            Err(e) => {
                note(&format!("error: {e}"));
                return ExitCode::FAILURE;
            }
        };
        let mut code = match &args.action {
            Some(Action::Serve(serve_args)) => serve(&store, serve_args).await,
            Some(Action::Maintain) => ExitCode::SUCCESS,
            None if !one_shot => shell(&session, args.format).await,
            None => run_batch(&session, &args, sources).await,
        };
        let maintained = match args.action {
            // For cron: everything that is due, and a failure is the command's failure.
            Some(Action::Maintain) => maintain(&store, Duration::MAX, true).await,
            // After statements: within the budget; a failure is logged and left for the next
            // run, the statements' result stands.
            Some(Action::Serve(_)) => true,
            None if one_shot && args.maintain_budget > 0 => {
                let budget = Duration::from_secs(args.maintain_budget);
                maintain(&store, budget, false).await;
                true
            }
            None => true,
        };
        if !maintained {
            code = ExitCode::FAILURE;
        }
        if let Err(e) = store.close().await {
            note(&format!("closing the store: {}", CliError::from(e)));
            return ExitCode::FAILURE;
        }
        code
    })
}
