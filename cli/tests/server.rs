//! `kalamstore serve` checked by clients no one here wrote: tokio-postgres (simple and
//! extended protocol, typed parameters, SCRAM, cancel), psql (libpq, TLS) and psycopg 3. Each
//! test starts its own server on a free port over its own data directory.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

const ROOT_PASSWORD: &str = "root-secret";

/// A server child process; killed when dropped.
struct Served {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Served {
    fn start() -> Self {
        Self::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, extra)
    }

    fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Self {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("kalamstore"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("KALAMSTORE_ROOT_PASSWORD", ROOT_PASSWORD)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("the server exited before listening")
                .unwrap();
            if let Some(addr) = line.split(" on 127.0.0.1:").nth(1) {
                let port = addr.split_whitespace().next().unwrap();
                break port.parse().unwrap();
            }
        };
        // Keep draining the server's log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, port, dir }
    }

    fn config(&self, user: &str, password: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(password)
            .dbname("kalamstore")
            .connect_timeout(Duration::from_secs(10));
        c
    }

    async fn connect(&self, user: &str, password: &str) -> Client {
        let (client, connection) = self.config(user, password).connect(NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    async fn root(&self) -> Client {
        self.connect("root", ROOT_PASSWORD).await
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The code of a failed statement.
fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no code: {e}"))
}

/// `app.m` (USER), `app.cfg` (SHARED) and the logins alice, bob (users).
async fn setup(root: &Client) {
    root.batch_execute(
        "CREATE NAMESPACE app;
         CREATE USER TABLE app.m (id BIGINT PRIMARY KEY, body TEXT, n INT, score DOUBLE, ok BOOLEAN,
             at TIMESTAMP, day DATE, raw BYTES, doc JSON, price DECIMAL(10, 2));
         CREATE SHARED TABLE app.cfg (k TEXT PRIMARY KEY, v TEXT);
         CREATE USER alice WITH PASSWORD 'alice-pw';
         CREATE USER bob WITH PASSWORD 'bob-pw' ROLE user;",
    )
    .await
    .unwrap();
}

/// A server with [`setup`]'s tables and logins, and root's and alice's connections to it.
async fn served_with_alice() -> (Served, Client, Client) {
    let s = Served::start();
    let root = s.root().await;
    setup(&root).await;
    let alice = s.connect("alice", "alice-pw").await;
    (s, root, alice)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_runs_many_times_and_refuses_a_changed_result_type() {
    let (s, root, alice) = served_with_alice().await;
    let bob = s.connect("bob", "bob-pw").await;
    // Both take the direct paths: a one-row INSERT of parameters, a read by key.
    let insert = alice
        .prepare("INSERT INTO app.m (id, body) VALUES ($1, $2)")
        .await
        .unwrap();
    let read = alice
        .prepare("SELECT * FROM app.m WHERE id = $1")
        .await
        .unwrap();
    for id in 1..=50i64 {
        let body = format!("body {id}");
        assert_eq!(alice.execute(&insert, &[&id, &body]).await.unwrap(), 1);
    }
    for id in [1i64, 17, 50] {
        let row = alice.query_one(&read, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, &str>(1), format!("body {id}"));
    }
    assert!(alice.query_opt(&read, &[&51i64]).await.unwrap().is_none());
    let e = alice
        .execute(&insert, &[&1i64, &"again"])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505", "{e}");
    // The same statement as bob reads bob's rows: none.
    let bobs = bob
        .prepare("SELECT * FROM app.m WHERE id = $1")
        .await
        .unwrap();
    assert!(bob.query_opt(&bobs, &[&1i64]).await.unwrap().is_none());

    // A new column changes what `SELECT *` returns: the statement prepared before says so
    // (as Postgres does) instead of sending rows its description does not match.
    root.batch_execute("ALTER TABLE app.m ADD COLUMN extra TEXT")
        .await
        .unwrap();
    let e = alice.query_opt(&read, &[&1i64]).await.unwrap_err();
    assert_eq!(code(&e), "0A000", "{e}");
    assert!(
        format!("{e:?}").contains("must not change result type"),
        "{e:?}"
    );
    let read = alice
        .prepare("SELECT * FROM app.m WHERE id = $1")
        .await
        .unwrap();
    let row = alice.query_one(&read, &[&1i64]).await.unwrap();
    assert_eq!(row.len(), 11);
    assert_eq!(row.get::<_, Option<&str>>(10), None);
    // The INSERT names its columns: it still fits.
    assert_eq!(alice.execute(&insert, &[&51i64, &"late"]).await.unwrap(), 1);
    let count = alice
        .query_one("SELECT count(*) FROM app.m", &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_parameters_and_results_round_trip_over_the_extended_protocol() {
    let (_s, _root, alice) = served_with_alice().await;
    let at = chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
        .unwrap()
        .and_hms_micro_opt(10, 11, 12, 345_678)
        .unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
    let inserted = alice
        .execute(
            "INSERT INTO app.m (id, body, n, score, ok, at, day, raw) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &1i64,
                &"héllo",
                &7i32,
                &2.5f64,
                &true,
                &at,
                &day,
                &vec![0u8, 1, 255],
            ],
        )
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    alice
        .batch_execute(
            "INSERT INTO app.m (id, body, doc, price) VALUES (2, NULL, '{\"a\": 1}', 12.34)",
        )
        .await
        .unwrap();

    let stmt = alice
        .prepare("SELECT id, body, n, score, ok, at, day, raw, doc, price FROM app.m WHERE id = $1")
        .await
        .unwrap();
    assert_eq!(stmt.params(), &[tokio_postgres::types::Type::INT8]);
    let types: Vec<_> = stmt
        .columns()
        .iter()
        .map(|c| c.type_().name().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "int8",
            "text",
            "int4",
            "float8",
            "bool",
            "timestamp",
            "date",
            "bytea",
            "json",
            "numeric"
        ]
    );
    let row = alice.query_one(&stmt, &[&1i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, &str>(1), "héllo");
    assert_eq!(row.get::<_, i32>(2), 7);
    assert_eq!(row.get::<_, f64>(3), 2.5);
    assert!(row.get::<_, bool>(4));
    assert_eq!(row.get::<_, chrono::NaiveDateTime>(5), at);
    assert_eq!(row.get::<_, chrono::NaiveDate>(6), day);
    assert_eq!(row.get::<_, Vec<u8>>(7), vec![0u8, 1, 255]);
    let row = alice.query_one(&stmt, &[&2i64]).await.unwrap();
    assert_eq!(row.get::<_, Option<&str>>(1), None);
    assert_eq!(
        row.get::<_, serde_json::Value>(8),
        serde_json::json!({"a": 1})
    );

    // UPDATE and DELETE with parameters report their counts.
    let updated = alice
        .execute(
            "UPDATE app.m SET body = $1 WHERE id = $2",
            &[&"changed", &1i64],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1);
    let deleted = alice
        .execute("DELETE FROM app.m WHERE id = $1", &[&2i64])
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let rows = alice
        .query("SELECT id, body FROM app.m ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(1, "changed".to_owned())]);

    // The simple protocol: several statements in one message, text results.
    let messages = alice
        .simple_query("SELECT count(*) AS c FROM app.m; SELECT 'x' AS t")
        .await
        .unwrap();
    let values: Vec<String> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["1", "x"]);

    // A bad statement is a typed error and the connection keeps serving.
    let e = alice.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(code(&e), "42601", "{e}");
    let e = alice
        .simple_query("SELECT * FROM app.nope")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P01", "{e}");
    let e = alice
        .execute("INSERT INTO app.m (id) VALUES ($1)", &[&1i64])
        .await
        .unwrap_err();
    assert_eq!(code(&e), "23505", "{e}");
    assert_eq!(alice.query("SELECT 1", &[]).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_and_unknown_logins_are_refused_with_28p01() {
    let s = Served::start();
    setup(&s.root().await).await;
    for (user, password) in [("alice", "wrong"), ("nobody", "alice-pw"), ("root", "")] {
        let e = s
            .config(user, password)
            .connect(NoTls)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in with {password:?}"));
        assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "{user}: {e}");
    }
    // A changed password works at once, the old one no more; a dropped login is gone.
    let root = s.root().await;
    root.batch_execute("ALTER USER alice WITH PASSWORD 'new-pw'")
        .await
        .unwrap();
    let e = s.config("alice", "alice-pw").connect(NoTls).await.err();
    let e = e.expect("the old login is refused");
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "alice: {e}");
    s.connect("alice", "new-pw").await;
    root.batch_execute("DROP USER bob").await.unwrap();
    let e = s.config("bob", "bob-pw").connect(NoTls).await.err();
    let e = e.expect("the old login is refused");
    assert_eq!(e.code(), Some(&SqlState::INVALID_PASSWORD), "bob: {e}");
    // The catalog lists logins without their verifiers.
    let rows = root
        .simple_query("SELECT * FROM system.users")
        .await
        .unwrap();
    let header = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => Some(
            r.columns()
                .iter()
                .map(|c| c.name().to_owned())
                .collect::<Vec<_>>(),
        ),
        _ => None,
    });
    assert_eq!(
        header.unwrap(),
        ["name", "role", "created_at", "updated_at"]
    );
}

/// Runs `sql` as `client` and returns the first column of every row, as text.
async fn column(client: &Client, sql: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    Ok(client
        .simple_query(sql)
        .await?
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("NULL").to_owned()),
            _ => None,
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_reaches_another_users_rows_or_operator_statements() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    let s = Served::start_in(dir, &["--files-dir", files.to_str().unwrap()]);
    let root = s.root().await;
    setup(&root).await;
    root.batch_execute(
        "EXECUTE AS USER 'alice' (INSERT INTO app.m (id, body) VALUES (1, 'alice secret'));
         EXECUTE AS USER 'bob' (INSERT INTO app.m (id, body) VALUES (2, 'bob note'));
         EXECUTE AS USER 'alice' (CREATE CONSUMER alice_feed ON app.m FROM EARLIEST);",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let bob = s.connect("bob", "bob-pw").await;

    // Reads of every shape see bob's rows only.
    for sql in [
        "SELECT body FROM app.m",
        "SELECT body FROM app.m WHERE id = 1 OR id = 2",
        "SELECT a.body FROM app.m a JOIN app.m b ON a.id = b.id",
        "SELECT body FROM app.m WHERE id IN (SELECT id FROM app.m)",
        "SELECT body FROM \"app\".\"m$meta\"",
        "SELECT body FROM changes_since('app.m', 0)",
    ] {
        let got = column(&bob, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(got.iter().all(|b| b == "bob note"), "{sql}: {got:?}");
        assert!(!got.is_empty(), "{sql}: sees nothing of its own");
    }
    assert_eq!(
        column(&bob, "SELECT name FROM system.users").await.unwrap(),
        ["bob"]
    );
    assert!(
        column(&bob, "SELECT name FROM system.consumers")
            .await
            .unwrap()
            .is_empty()
    );
    // system.sessions: a user sees its own connection, an operator every one with what it runs.
    assert_eq!(
        column(&bob, "SELECT user_name FROM system.sessions")
            .await
            .unwrap(),
        ["bob"]
    );
    let sql = "SELECT statement FROM system.sessions WHERE user_name = 'root'";
    assert_eq!(column(&root, sql).await.unwrap(), [sql]);
    // Writes cannot reach alice's key either: bob's id 1 is his own row.
    bob.batch_execute("INSERT INTO app.m (id, body) VALUES (1, 'bob one')")
        .await
        .unwrap();
    bob.batch_execute("DELETE FROM app.m WHERE id = 1")
        .await
        .unwrap();
    let alice = s.connect("alice", "alice-pw").await;
    assert_eq!(
        column(&alice, "SELECT body FROM app.m").await.unwrap(),
        ["alice secret"]
    );

    // Statements for operators are refused with 42501, one per path.
    for sql in [
        "EXECUTE AS USER 'alice' (SELECT * FROM app.m)",
        "SUBSCRIBE TO app.m FOR ALL USERS",
        "CREATE CONSUMER all_of_them ON app.m FOR ALL USERS",
        "CONSUME FROM alice_feed",
        "EXPORT USER DATA 'alice' TO 'alice.zip'",
        "IMPORT USER DATA 'bob' FROM 'x.zip'",
        "CREATE STORAGE mine TYPE filesystem PATH '/tmp/mine'",
        "DROP TABLE app.m",
        "STORAGE FLUSH ALL",
        "CREATE USER eve WITH PASSWORD 'x' ROLE operator",
    ] {
        let e = bob.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "42501", "{sql}: {e}");
    }
    // An operator's file paths stay inside --files-dir.
    for sql in [
        "EXPORT USER DATA 'alice' TO '/tmp/alice.zip'",
        "EXPORT USER DATA 'alice' TO '../alice.zip'",
    ] {
        let e = root.simple_query(sql).await.unwrap_err();
        assert_eq!(code(&e), "42501", "{sql}: {e}");
    }
    root.batch_execute("EXPORT USER DATA 'alice' TO 'alice.zip'")
        .await
        .unwrap();
    assert!(files.join("alice.zip").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_running_subscription() {
    let s = Served::start();
    let root = s.root().await;
    setup(&root).await;
    root.batch_execute("INSERT INTO app.cfg VALUES ('a', '1')")
        .await
        .unwrap();
    let (client, connection) = s.config("alice", "alice-pw").connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    let cancel = client.cancel_token();
    let started = Instant::now();
    let running = tokio::spawn(async move {
        let r = client.simple_query("SUBSCRIBE TO app.cfg").await;
        (r, client)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !running.is_finished(),
        "a subscription runs until cancelled"
    );
    cancel.cancel_query(NoTls).await.unwrap();
    let (result, client) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the cancel ends the subscription")
        .unwrap();
    let e = result.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The connection serves the next statement.
    assert_eq!(
        column(&client, "SELECT v FROM app.cfg").await.unwrap(),
        ["1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_of_a_subscription_to_stdout_streams_rows_until_cancelled() {
    use futures::StreamExt as _;
    let (s, root, alice) = served_with_alice().await;
    alice
        .batch_execute("INSERT INTO app.m (id, body) VALUES (1, 'before')")
        .await
        .unwrap();

    // tokio-postgres reads CopyData as it comes: the row already there, then each new row as
    // it is written. Text COPY lines, tab separated: `_seq`, `_op`, then the row.
    let (follower, connection) = s.config("alice", "alice-pw").connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    let cancel = follower.cancel_token();
    let out = follower
        .copy_out("COPY (SUBSCRIBE TO app.m) TO STDOUT")
        .await
        .unwrap();
    let mut out = std::pin::pin!(out);
    let mut next_line = async || {
        let data = tokio::time::timeout(Duration::from_secs(10), out.next())
            .await
            .expect("a line within 10 s");
        data.map(|d| d.map(|b| String::from_utf8(b.to_vec()).unwrap()))
    };
    let first = next_line().await.unwrap().unwrap();
    assert!(first.contains("\tinsert\t1\tbefore\t"), "{first}");
    for (id, body) in [(2i64, "live one"), (3, "live two")] {
        alice
            .execute(
                "INSERT INTO app.m (id, body) VALUES ($1, $2)",
                &[&id, &body],
            )
            .await
            .unwrap();
        let line = next_line().await.unwrap().unwrap();
        assert!(
            line.contains(&format!("\tinsert\t{id}\t{body}\t")),
            "{line}"
        );
    }
    // A CancelRequest ends it with 57014; the connection serves on.
    cancel.cancel_query(NoTls).await.unwrap();
    let e = next_line().await.unwrap().unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert_eq!(
        column(&follower, "SELECT body FROM app.m ORDER BY id")
            .await
            .unwrap(),
        ["before", "live one", "live two"]
    );

    // psql runs the same COPY until Ctrl-C, which it turns into a CancelRequest. (psql
    // buffers COPY output written to a pipe, so its lines are read once it exits.)
    let psql = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={} user=alice dbname=kalamstore",
            s.port
        ))
        .args(["-X", "-c", "COPY (SUBSCRIBE TO app.m) TO STDOUT"])
        .env("PGPASSWORD", "alice-pw")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql is on the machine image (PostgreSQL 15 client)");
    // Its COPY is running once system.sessions shows it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let running = "SELECT count(*) FROM system.sessions WHERE statement LIKE 'COPY (SUBSCRIBE%'";
    while column(&root, running).await.unwrap() != ["1"] {
        assert!(Instant::now() < deadline, "psql's COPY never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &psql.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = psql.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    let bodies: Vec<&str> = stdout
        .lines()
        .map(|l| l.split('\t').nth(3).unwrap_or(l))
        .collect();
    assert_eq!(bodies, ["before", "live one", "live two"], "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_hand_out_a_querys_rows_and_close_with_their_block() {
    let (s, _root, alice) = served_with_alice().await;
    alice
        .batch_execute(
            "INSERT INTO app.m (id, body) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')",
        )
        .await
        .unwrap();
    let e = alice
        .batch_execute("DECLARE c CURSOR FOR SELECT id FROM app.m")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "25P01", "{e}");
    alice.batch_execute("BEGIN").await.unwrap();
    alice
        .batch_execute("DECLARE c CURSOR FOR SELECT id, body FROM app.m ORDER BY id")
        .await
        .unwrap();
    let e = alice
        .batch_execute("DECLARE c CURSOR FOR SELECT 1")
        .await
        .unwrap_err();
    assert_eq!(code(&e), "42P03", "{e}");
    // The extended protocol describes FETCH by the cursor's columns.
    let two = alice.query("FETCH 2 FROM c", &[]).await.unwrap();
    let ids: Vec<i64> = two.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, [1, 2]);
    assert_eq!(column(&alice, "FETCH NEXT c").await.unwrap(), ["3"]);
    assert_eq!(column(&alice, "FETCH ALL c").await.unwrap(), ["4", "5"]);
    assert!(column(&alice, "FETCH ALL c").await.unwrap().is_empty());
    let e = alice.batch_execute("FETCH 1 FROM nope").await.unwrap_err();
    assert_eq!(code(&e), "34000", "{e}");
    alice.batch_execute("COMMIT").await.unwrap();
    // COMMIT closed it; one declared WITH HOLD stays until CLOSE.
    let e = alice.batch_execute("FETCH 1 FROM c").await.unwrap_err();
    assert_eq!(code(&e), "34000", "{e}");
    alice
        .batch_execute("DECLARE h CURSOR WITH HOLD FOR SELECT body FROM app.m ORDER BY id")
        .await
        .unwrap();
    assert_eq!(column(&alice, "FETCH 1 h").await.unwrap(), ["a"]);
    alice.batch_execute("CLOSE h").await.unwrap();
    let e = alice.batch_execute("CLOSE h").await.unwrap_err();
    assert_eq!(code(&e), "34000", "{e}");
    // A user's cursor reads that user's rows only.
    let bob = s.connect("bob", "bob-pw").await;
    bob.batch_execute("DECLARE b CURSOR WITH HOLD FOR SELECT id FROM app.m")
        .await
        .unwrap();
    assert!(column(&bob, "FETCH ALL b").await.unwrap().is_empty());
}

fn send_raw(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = socket.write_all(bytes);
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer);
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bytes_other_protocols_and_vanishing_clients_leave_the_server_serving() {
    let s = Served::start();
    let root = s.root().await;
    setup(&root).await;
    root.batch_execute(
        "INSERT INTO app.cfg SELECT CAST(value AS TEXT), 'v' FROM generate_series(1, 20000)",
    )
    .await
    .unwrap();
    // An HTTP request, random bytes, a startup packet with a bogus length, a truncated one.
    send_raw(s.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    send_raw(s.port, &[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7]);
    send_raw(s.port, &[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]);
    send_raw(s.port, &[0, 0, 0, 40, 0, 3, 0, 0, b'u', b's']);
    // A client that leaves in the middle of a large result.
    {
        let mut socket = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        let mut startup = Vec::new();
        let body = b"\0\x03\0\0user\0root\0\0";
        startup.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        startup.extend_from_slice(body);
        socket.write_all(&startup).unwrap();
    }
    let (client, connection) = s
        .config("root", ROOT_PASSWORD)
        .connect(NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    let query = tokio::spawn(async move {
        let _ = client
            .query("SELECT * FROM app.cfg CROSS JOIN app.cfg b", &[])
            .await;
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    query.abort();
    task.abort();
    // Everyone else is still served.
    let again = s.root().await;
    assert_eq!(
        column(&again, "SELECT count(*) FROM app.cfg")
            .await
            .unwrap(),
        ["20000"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_is_told_which_pid_has_the_data_dir() {
    let s = Served::start();
    s.root().await;
    let out = Command::new(assert_cmd::cargo::cargo_bin("kalamstore"))
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(["-c", "SHOW TABLES"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("in use by pid {}", s.child.id())),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let s = Served::start_with(&["--idle-timeout", "1"]);
    let idle = s.root().await;
    let busy = s.root().await;
    setup(&idle).await;
    // A statement running past the timeout keeps its connection.
    let subscription = tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(3),
            busy.simple_query("SUBSCRIBE TO app.cfg"),
        )
        .await;
        busy
    });
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let e = idle.simple_query("SELECT 1").await.err();
    assert!(
        idle.is_closed(),
        "the idle one was closed (its statement failed with {e:?})"
    );
    let busy = subscription.await.unwrap();
    assert!(!busy.is_closed(), "the one running a statement stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_get_53300_and_sigterm_stops_the_server() {
    let mut s = Served::start_with(&["--max-connections", "2"]);
    let a = s.root().await;
    let _b = s.root().await;
    let e = s
        .config("root", ROOT_PASSWORD)
        .connect(NoTls)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
    drop(a);
    // The closed connection frees its slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match s.config("root", ROOT_PASSWORD).connect(NoTls).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // SIGTERM: the server stops within a few seconds and exits cleanly.
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// psql, if the machine has it (the image does); otherwise the test says so and fails.
fn psql(s: &Served, user: &str, password: &str, extra: &[&str], args: &[&str]) -> (bool, String) {
    let mut conn = format!(
        "host=127.0.0.1 port={} user={user} dbname=kalamstore",
        s.port
    );
    for e in extra {
        conn.push(' ');
        conn.push_str(e);
    }
    let out = Command::new("psql")
        .arg(conn)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .expect("psql is on the machine image (PostgreSQL 15 client)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn psql_runs_statements_and_reads_results() {
    let s = Served::start();
    let (ok, out) = psql(
        &s,
        "root",
        ROOT_PASSWORD,
        &["sslmode=disable"],
        &[
            "-c",
            "CREATE NAMESPACE app",
            "-c",
            "CREATE SHARED TABLE app.cfg (k TEXT PRIMARY KEY, v TEXT)",
            "-c",
            "INSERT INTO app.cfg VALUES ('a', 'x'), ('b', NULL)",
            "-c",
            "SELECT k, coalesce(v, 'null') FROM app.cfg ORDER BY k",
            "-c",
            "SHOW TABLES",
            "-c",
            "\\dt",
            "-c",
            "\\d app.cfg",
        ],
    );
    assert!(ok, "{out}");
    // psql's own catalog queries: \dt lists, \d describes.
    assert!(out.contains("app|cfg|table|kalamstore"), "{out}");
    assert!(out.contains("k|text||not null|\nv|text|||"), "{out}");
    assert!(out.contains("INSERT 0 2"), "{out}");
    assert!(out.contains("a|x\nb|null\n"), "{out}");
    assert!(out.contains("app|cfg|SHARED|local"), "{out}");
    let (ok, out) = psql(&s, "root", ROOT_PASSWORD, &[], &["-c", "SELECT version()"]);
    assert!(
        ok && out.starts_with("kalamstore 0.") && out.contains("commit "),
        "{out}"
    );
    // FETCH_COUNT: psql reads through a cursor (BEGIN; DECLARE ... NO SCROLL CURSOR; FETCH
    // FORWARD n in a loop; CLOSE; COMMIT).
    let (ok, out) = psql(
        &s,
        "root",
        ROOT_PASSWORD,
        &[],
        &[
            "-v",
            "FETCH_COUNT=1",
            "-c",
            "SELECT k, coalesce(v, 'null') FROM app.cfg ORDER BY k",
        ],
    );
    assert!(ok, "{out}");
    assert_eq!(out, "a|x\nb|null\n");
    let (ok, out) = psql(&s, "root", "wrong", &[], &["-c", "SELECT 1"]);
    assert!(!ok && out.contains("authentication failed"), "{out}");
}

/// A self-signed certificate for 127.0.0.1, made with the machine's openssl.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=127.0.0.1"])
        // A server certificate (not a CA) for the address clients dial: rustls checks both.
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl is on the machine");
    assert!(status.success());
    (cert, key)
}

#[test]
fn psql_connects_over_tls_when_the_server_has_a_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let s = Served::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let (ok, out) = psql(
        &s,
        "root",
        ROOT_PASSWORD,
        &["sslmode=require"],
        &["-c", "SELECT 'over tls'"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("over tls"), "{out}");
}

/// A TLS client configuration that trusts the certificate in the PEM file `cert` only.
fn trusting(cert: &Path) -> rustls::ClientConfig {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_verifies_the_certificate_and_runs_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(certs.path());
    let s = Served::start_with(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let tls = trusting(&cert);
    let mut config = s.config("root", ROOT_PASSWORD);
    config.ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, connection) = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    setup(&client).await;
    // The extended protocol with parameters and the simple one, both over TLS.
    client
        .execute(
            "INSERT INTO app.cfg (k, v) VALUES ($1, $2)",
            &[&"mode", &"tls"],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT v FROM app.cfg WHERE k = $1", &[&"mode"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "tls");

    // A client that trusts another certificate refuses the server's.
    let elsewhere = certs.path().join("other");
    std::fs::create_dir(&elsewhere).unwrap();
    let (other, _) = certificate(&elsewhere);
    let untrusting = trusting(&other);
    let e = config
        .connect(tokio_postgres_rustls::MakeRustlsConnect::new(untrusting))
        .await
        .err()
        .expect("a certificate the client does not trust is refused");
    assert!(format!("{e:?}").contains("InvalidCertificate"), "{e:?}");
    // Without TLS, the same server still answers.
    let plain = s.root().await;
    assert_eq!(plain.query("SELECT 1", &[]).await.unwrap().len(), 1);
}

/// What a client program printed; it must succeed.
fn client_output(command: &mut Command) -> String {
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The venv python with psycopg (scripts/delta-readers installs it; `make test` sets
/// `KALAMSTORE_DELTA_PYTHON`).
fn python() -> PathBuf {
    std::env::var_os("KALAMSTORE_DELTA_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            let p = Path::new(&home).join(".cache/kalamstore/delta-venv/bin/python");
            p.exists().then_some(p)
        })
        .expect(
            "psycopg's python is missing: run `make test`, or scripts/delta-readers and set \
             KALAMSTORE_DELTA_PYTHON",
        )
}

#[test]
fn psycopg_queries_with_parameters_and_streams_a_subscription() {
    let s = Served::start();
    let script = r#"
import sys, psycopg
port = int(sys.argv[1])
root = psycopg.connect(host="127.0.0.1", port=port, user="root", password=sys.argv[2],
                       dbname="kalamstore", autocommit=True)
root.execute("CREATE NAMESPACE chat")
root.execute("CREATE USER TABLE chat.msg (id BIGINT PRIMARY KEY, body TEXT, n INT)")
root.execute("CREATE USER carol WITH PASSWORD 'carol-pw'")
with psycopg.connect(host="127.0.0.1", port=port, user="carol", password="carol-pw",
                     dbname="kalamstore") as conn:
    with conn.cursor() as cur:
        for i in range(1, 4):
            cur.execute("INSERT INTO chat.msg (id, body, n) VALUES (%s, %s, %s)", (i, f"m{i}", i * 10))
        conn.commit()
        cur.execute("SELECT id, body, n FROM chat.msg WHERE n >= %s ORDER BY id", (20,))
        print("rows", cur.fetchall())
        cur.execute("SELECT count(*) FROM chat.msg")
        print("count", cur.fetchone()[0])
    conn.commit()
    live = psycopg.connect(host="127.0.0.1", port=port, user="carol", password="carol-pw",
                           dbname="kalamstore", autocommit=True)
    seen = []
    for row in live.cursor().stream("SUBSCRIBE TO chat.msg OPTIONS (last_rows = 2)"):
        seen.append(row)
        if len(seen) == 2:
            conn.execute("INSERT INTO chat.msg (id, body, n) VALUES (4, 'live', 40)")
            conn.commit()
        if len(seen) == 3:
            break
    print("live", [(r[1], r[3], r[4]) for r in seen])
    with conn.cursor() as cur:
        with cur.copy("COPY chat.msg (id, body, n) FROM STDIN") as copy:
            for i in range(10, 13):
                copy.write_row((i, f"copied {i}", i))
        conn.commit()
        out = []
        with cur.copy("COPY (SELECT id, body FROM chat.msg WHERE id >= 10 ORDER BY id) TO STDOUT") as copy:
            for row in copy.rows():
                out.append(row)
        print("copy", out)
    # Materialize's pattern for drivers without streaming: a cursor over the subscription,
    # fetched in a loop; FETCH waits for new rows (at most its timeout).
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("DECLARE c CURSOR FOR SUBSCRIBE TO chat.msg OPTIONS (last_rows = 1)")
        cur.execute("FETCH ALL c")
        fetched = [(r[1], r[3]) for r in cur.fetchall()]
        live.execute("INSERT INTO chat.msg (id, body, n) VALUES (5, 'fetched', 50)")
        cur.execute("FETCH ALL c WITH (timeout = '10s')")
        fetched += [(r[1], r[3]) for r in cur.fetchall()]
        cur.execute("FETCH ALL c WITH (timeout = '100ms')")
        fetched += [(r[1], r[3]) for r in cur.fetchall()]
        cur.execute("CLOSE c")
    print("fetch", fetched)
"#;
    let stdout = client_output(Command::new(python()).args([
        "-c",
        script,
        &s.port.to_string(),
        ROOT_PASSWORD,
    ]));
    assert!(
        stdout.contains("rows [(2, 'm2', 20), (3, 'm3', 30)]"),
        "{stdout}"
    );
    assert!(stdout.contains("count 3"), "{stdout}");
    assert!(
        stdout.contains("copy [('10', 'copied 10'), ('11', 'copied 11'), ('12', 'copied 12')]"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("live [('insert', 'm2', 20), ('insert', 'm3', 30), ('insert', 'live', 40)]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fetch [('insert', 'copied 12'), ('insert', 'fetched')]"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_load_loses_no_acknowledged_write() {
    use std::os::unix::process::ExitStatusExt as _;
    use std::sync::{Arc, Mutex};

    let mut s = Served::start();
    setup(&s.root().await).await;
    let acked = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let mut writers = Vec::new();
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        for lane in 0..2i64 {
            let client = s.connect(user, password).await;
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                let insert = client
                    .prepare("INSERT INTO app.m (id, body) VALUES ($1, $2)")
                    .await
                    .unwrap();
                for i in 0.. {
                    let id = lane * 1_000_000 + i;
                    match client.execute(&insert, &[&id, &"row"]).await {
                        Ok(1) => acked.lock().unwrap().push((user.to_owned(), id)),
                        Ok(n) => panic!("INSERT of one row reported {n}"),
                        // The server is gone.
                        Err(_) => break,
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.child.kill().unwrap();
    let status = s.child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the server died of SIGKILL: {status:?}"
    );
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "the load ran: {} writes", acked.len());

    let dir = std::mem::replace(&mut s.dir, tempfile::tempdir().unwrap());
    let s = Served::start_in(dir, &[]);
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        let client = s.connect(user, password).await;
        let present: std::collections::HashSet<i64> = client
            .query("SELECT id FROM app.m", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mine: Vec<i64> = acked
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, id)| *id)
            .collect();
        let lost: Vec<_> = mine.iter().filter(|id| !present.contains(id)).collect();
        assert!(lost.is_empty(), "{user} lost acknowledged rows {lost:?}");
        // At most the one write per lane in flight at the kill may have landed unacknowledged.
        assert!(
            present.len() <= mine.len() + 2,
            "{user}: {} rows, {} acked",
            present.len(),
            mine.len()
        );
    }
}

/// pgbench's scripts and the tables they use (`benches/pgbench/`).
fn pgbench_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/pgbench")
}

/// The resident memory of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The transactions pgbench completed per script, by script file name.
fn pgbench_counts(output: &str) -> std::collections::HashMap<String, u64> {
    let mut counts = std::collections::HashMap::new();
    let mut script = None;
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("SQL script ") {
            script = rest
                .split_once(": ")
                .and_then(|(_, path)| Path::new(path.trim()).file_name())
                .map(|f| f.to_string_lossy().into_owned());
        } else if let (Some(name), Some(n)) = (
            &script,
            line.trim()
                .strip_prefix("- ")
                .and_then(|l| l.split_once(" transactions"))
                .and_then(|(n, _)| n.parse::<u64>().ok()),
        ) {
            counts.insert(name.clone(), n);
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pgbench_load_of_four_users_keeps_every_acknowledged_write() {
    const USERS: usize = 4;
    const CLIENTS: usize = 16;
    const SECONDS: u64 = 15;
    let s = Served::start();
    let root = s.root().await;
    let setup = std::fs::read_to_string(pgbench_dir().join("setup.sql")).unwrap();
    root.batch_execute(&setup).await.unwrap();
    root.batch_execute("CREATE STORAGE other TYPE filesystem")
        .await
        .unwrap();
    for u in 1..=USERS {
        root.batch_execute(&format!(
            "CREATE USER u{u} WITH PASSWORD 'pw{u}';
             EXECUTE AS USER 'u{u}' (INSERT INTO bench.counters SELECT value, 0 FROM generate_series(1, 1000));
             EXECUTE AS USER 'u{u}' (INSERT INTO bench.trash SELECT value FROM generate_series(1, 1000));"
        ))
        .await
        .unwrap();
    }
    // Each user's pgbench runs its own protocol mode; ids of user u live in [u * 10^15, ...).
    let modes = ["simple", "extended", "prepared", "prepared"];
    let mut runs = Vec::new();
    for u in 1..=USERS {
        let dir = pgbench_dir();
        let script = |name: &str, weight: u32| format!("{}@{weight}", dir.join(name).display());
        let child = Command::new("pgbench")
            .args(["-n", "-h", "127.0.0.1", "-p", &s.port.to_string()])
            .args([
                "-U",
                &format!("u{u}"),
                "-c",
                &CLIENTS.to_string(),
                "-j",
                "1",
            ])
            .args(["-T", &SECONDS.to_string(), "-M", modes[u - 1]])
            .args(["-D", &format!("base={}", u as u64 * 1_000_000_000_000_000)])
            .args([
                "-f",
                &script("insert.sql", 5),
                "-f",
                &script("update.sql", 3),
            ])
            .args([
                "-f",
                &script("read.sql", 10),
                "-f",
                &script("aggregate.sql", 1),
            ])
            .args(["-f", &script("delete.sql", 1), "kalamstore"])
            .env("PGPASSWORD", format!("pw{u}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pgbench is on the machine image (PostgreSQL 15)");
        runs.push(child);
    }
    // Meanwhile: flushes, a compaction and a storage move, and the server's memory.
    let started = Instant::now();
    let mut peak = 0;
    let mut moved = false;
    let mut compacted = false;
    while started.elapsed() < Duration::from_secs(SECONDS) {
        peak = peak.max(rss(s.child.id()));
        let _ = root.batch_execute("STORAGE FLUSH TABLE bench.events").await;
        let _ = root
            .batch_execute("STORAGE FLUSH TABLE bench.counters")
            .await;
        if !compacted && started.elapsed() > Duration::from_secs(SECONDS / 3) {
            root.batch_execute("STORAGE COMPACT TABLE bench.events")
                .await
                .unwrap();
            compacted = true;
        }
        if !moved && started.elapsed() > Duration::from_secs(SECONDS / 2) {
            root.batch_execute("ALTER TABLE bench.counters SET STORAGE other")
                .await
                .unwrap();
            moved = true;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    assert!(moved && compacted);
    for (i, child) in runs.into_iter().enumerate() {
        let u = i + 1;
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pgbench of u{u}:\n{stdout}\n{stderr}");
        let counts = pgbench_counts(&stdout);
        let (inserts, updates) = (counts["insert.sql"], counts["update.sql"]);
        assert!(inserts > 0 && updates > 0, "u{u}: {counts:?}\n{stdout}");

        let client = s.connect(&format!("u{u}"), &format!("pw{u}")).await;
        let row = client
            .query_one("SELECT count(*), min(id), max(id) FROM bench.events", &[])
            .await
            .unwrap();
        let (rows, min, max): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        // Every acknowledged insert is there; a transaction still running when pgbench
        // stopped its clock may have landed too (at most one per client).
        assert!(
            (inserts..=inserts + CLIENTS as u64).contains(&(rows as u64)),
            "u{u}: {rows} rows for {inserts} acknowledged inserts"
        );
        // No user ever sees another's rows.
        let base = u as i64 * 1_000_000_000_000_000;
        assert!(
            min > base && max <= base + 1_000_000_000_000_000,
            "u{u}: {min}..{max}"
        );
        let sum: i64 = client
            .query_one("SELECT sum(n) FROM bench.counters", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            (updates..=updates + CLIENTS as u64).contains(&(sum as u64)),
            "u{u}: counters add up to {sum} for {updates} acknowledged updates"
        );
    }
    assert!(peak < 2 << 30, "the server's RSS peaked at {peak} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_moves_rows_in_and_out_and_names_the_line_of_a_bad_record() {
    use futures::{SinkExt as _, TryStreamExt as _};

    let (_s, _root, alice) = served_with_alice().await;
    // In: CSV over the extended protocol, 25,000 rows in chunks that split records (three
    // atomic batches of at most 10,000 rows).
    let sink = alice
        .copy_in("COPY app.m (id, body, n) FROM STDIN WITH (FORMAT csv, HEADER true)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    let mut text = String::from("id,body,n\n");
    for i in 1..=25_000 {
        text.push_str(&format!("{i},\"row, {i}\",{}\n", i % 7));
    }
    for chunk in text.as_bytes().chunks(4093) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 25_000);
    let row = alice
        .query_one("SELECT count(*), sum(n), max(body) FROM app.m", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 25_000);
    assert_eq!(
        row.get::<_, i64>(1),
        (1..=25_000).map(|i| i % 7).sum::<i64>()
    );
    assert_eq!(row.get::<_, &str>(2), "row, 9999");

    // Out: a query as CSV with a header, NULL as an empty field.
    let out = alice
        .copy_out(
            "COPY (SELECT id, body, score FROM app.m WHERE id <= 2 ORDER BY id) TO STDOUT \
             WITH (FORMAT csv, HEADER true)",
        )
        .await
        .unwrap();
    let bytes: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
    let text: String = bytes.iter().map(|b| String::from_utf8_lossy(b)).collect();
    assert_eq!(text, "id,body,score\n1,\"row, 1\",\n2,\"row, 2\",\n");

    // A value that does not fit fails its batch, named by line and column; nothing of that
    // batch is written.
    let sink = alice
        .copy_in("COPY app.m (id, n) FROM STDIN")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    sink.send(bytes::Bytes::from_static(
        b"30001\t1\n30002\tlots\n30003\t3\n",
    ))
    .await
    .unwrap();
    let e = sink.finish().await.unwrap_err();
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert_eq!(code(&e), "22023", "{e}");
    assert!(
        message.contains("line 2") && message.contains("`lots`"),
        "{message}"
    );
    let n: i64 = alice
        .query_one("SELECT count(*) FROM app.m WHERE id > 30000", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[test]
fn psql_copies_a_file_in_and_a_query_out() {
    let s = Served::start();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "k,v\na,1\nb,\n\"c,d\",\"x \"\"y\"\"\"\n").unwrap();
    let output = dir.path().join("out.txt");
    let (ok, out) = psql(
        &s,
        "root",
        ROOT_PASSWORD,
        &[],
        &[
            "-c",
            "CREATE NAMESPACE app",
            "-c",
            "CREATE SHARED TABLE app.cfg (k TEXT PRIMARY KEY, v TEXT)",
            "-c",
            &format!(
                "\\copy app.cfg FROM '{}' WITH (FORMAT csv, HEADER true)",
                input.display()
            ),
            "-c",
            &format!(
                "\\copy (SELECT k, v FROM app.cfg ORDER BY k) TO '{}'",
                output.display()
            ),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("COPY 3"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "a\t1\nb\t\\N\nc,d\tx \"y\"\n"
    );
}

/// The PostgreSQL JDBC driver (Debian's `libpostgresql-jdbc-java`, which `make test` installs
/// when a JVM is present).
const JDBC_JAR: &str = "/usr/share/java/postgresql.jar";

#[test]
fn jdbc_runs_prepared_statements_and_reads_typed_results() {
    if Command::new("java")
        .args(["-XX:-UsePerfData", "-version"])
        .output()
        .is_err()
    {
        assert_eq!(
            std::env::var("KALAMSTORE_SKIP_JDBC").as_deref(),
            Ok("1"),
            "no JVM on this machine: install one (the JDBC test runs against it), or set \
             KALAMSTORE_SKIP_JDBC=1 to skip this test"
        );
        eprintln!("skipping the JDBC test: no JVM (KALAMSTORE_SKIP_JDBC=1)");
        return;
    }
    assert!(
        Path::new(JDBC_JAR).exists(),
        "{JDBC_JAR} is missing: run `make test` (it installs libpostgresql-jdbc-java)"
    );
    let s = Served::start();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("Jdbc.java");
    std::fs::write(
        &source,
        r#"
import java.sql.*;
public class Jdbc {
  public static void main(String[] a) throws Exception {
    String url = "jdbc:postgresql://127.0.0.1:" + a[0] + "/kalamstore";
    try (Connection root = DriverManager.getConnection(url, "root", a[1]);
         Statement st = root.createStatement()) {
      st.execute("CREATE NAMESPACE shop");
      st.execute("CREATE SHARED TABLE shop.items (id BIGINT PRIMARY KEY, name TEXT, price DOUBLE, live BOOLEAN)");
      try (PreparedStatement ins = root.prepareStatement("INSERT INTO shop.items VALUES (?, ?, ?, ?)")) {
        for (int i = 1; i <= 3; i++) {
          ins.setLong(1, i); ins.setString(2, "item" + i); ins.setDouble(3, i * 1.5); ins.setBoolean(4, i != 2);
          ins.executeUpdate();
        }
      }
      // Server-side prepared statements after the driver's threshold (5 executions).
      try (PreparedStatement q = root.prepareStatement("SELECT name, price, live FROM shop.items WHERE id = ?")) {
        StringBuilder out = new StringBuilder();
        for (int n = 0; n < 7; n++) {
          q.setLong(1, (n % 3) + 1);
          try (ResultSet rs = q.executeQuery()) {
            rs.next();
            out.append(rs.getString(1)).append('=').append(rs.getDouble(2)).append('/').append(rs.getBoolean(3)).append(' ');
          }
        }
        System.out.println(out.toString().trim());
      }
      ResultSetMetaData md = st.executeQuery("SELECT id, name FROM shop.items").getMetaData();
      System.out.println(md.getColumnTypeName(1) + " " + md.getColumnTypeName(2));
    }
  }
}
"#,
    )
    .unwrap();
    let stdout = client_output(
        Command::new("java")
            // No `hsperfdata_<user>` directory left in the temp dir.
            .arg("-XX:-UsePerfData")
            .args(["-cp", JDBC_JAR])
            .arg(&source)
            .args([&s.port.to_string(), ROOT_PASSWORD]),
    );
    assert!(
        stdout.contains(
            "item1=1.5/true item2=3.0/false item3=4.5/true item1=1.5/true item2=3.0/false \
             item3=4.5/true item1=1.5/true"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("int8 text"), "{stdout}");
}
