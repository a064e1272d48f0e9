//! The `kalamstore` binary end to end: scripts, formats, restarts, user isolation, and bad
//! input that fails cleanly and changes nothing.

use assert_cmd::Command;

fn cli(dir: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("kalamstore").unwrap();
    c.arg("--data-dir").arg(dir.join("data"));
    c
}

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = cli(dir).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(dir: &std::path::Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = run(dir, args);
    assert!(success, "{args:?} failed:\n{stderr}");
    stdout
}

const SETUP: &str = "CREATE NAMESPACE app;
CREATE USER TABLE app.notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL, n INT DEFAULT 0, at TIMESTAMP);
CREATE SHARED TABLE app.config (k TEXT PRIMARY KEY, v TEXT);";

#[test]
fn a_script_with_comments_runs_and_reports_per_statement() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sql");
    std::fs::write(
        &script,
        format!(
            "-- leading comment; with a semicolon\n{SETUP}\n\n\
             INSERT INTO app.config VALUES ('greeting', 'hi; -- not a comment');\n\
             /* block */ SELECT * FROM app.config;\n"
        ),
    )
    .unwrap();
    let (success, stdout, stderr) = run(
        dir.path(),
        &["--format", "csv", "--file", script.to_str().unwrap()],
    );
    assert!(success, "{stderr}");
    assert_eq!(stdout, "k,v\ngreeting,hi; -- not a comment\n");
    assert!(stderr.contains("INSERT 1"), "{stderr}");
    assert!(!stderr.contains(" 0 ms"), "{stderr}");
}

#[test]
fn user_rows_stay_apart_and_survive_a_restart_and_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "-c",
            "INSERT INTO app.notes (id, body, at) VALUES (1, 'a1', '2026-01-02T03:04:05Z'), (2, 'a2', NULL)",
        ],
    );
    ok(
        dir.path(),
        &[
            "--user",
            "bob",
            "-c",
            "INSERT INTO app.notes (id, body) VALUES (1, 'b1')",
        ],
    );
    ok(dir.path(), &["-c", "STORAGE FLUSH TABLE app.notes"]);
    ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "-c",
            "UPDATE app.notes SET body = 'a1 edited' WHERE id = 1",
            "-c",
            "DELETE FROM app.notes WHERE id = 2",
        ],
    );
    ok(
        dir.path(),
        &["-c", "STORAGE FLUSH TABLE app.notes FOR USER 'alice'"],
    );
    let alice = ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "--format",
            "json",
            "-c",
            "SELECT id, body, n, at FROM app.notes ORDER BY id",
        ],
    );
    assert_eq!(
        alice,
        "{\"id\":1,\"body\":\"a1 edited\",\"n\":0,\"at\":\"2026-01-02T03:04:05Z\"}\n"
    );
    let bob = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "EXECUTE AS USER 'bob' (SELECT id, body FROM app.notes)",
        ],
    );
    assert_eq!(bob, "id,body\n1,b1\n");
    let (success, _, stderr) = run(dir.path(), &["-c", "SELECT * FROM app.notes"]);
    assert!(!success && stderr.contains("USER table"), "{stderr}");
    let count = ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "--format",
            "csv",
            "-c",
            "SELECT COUNT(*) FROM app.notes",
        ],
    );
    assert_eq!(count, "count\n1\n");
}

#[test]
fn parameters_fill_placeholders() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    ok(
        dir.path(),
        &[
            "--param",
            "k1",
            "--param",
            "v1",
            "-c",
            "INSERT INTO app.config VALUES ($1, $2)",
        ],
    );
    let out = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "--param",
            "k1",
            "-c",
            "SELECT v FROM app.config WHERE k = $1",
        ],
    );
    assert_eq!(out, "v\nv1\n");
}

#[test]
fn system_views_and_maintenance_statements_work() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    ok(
        dir.path(),
        &["-c", "INSERT INTO app.config VALUES ('a', '1'), ('b', '2')"],
    );
    ok(dir.path(), &["-c", "STORAGE FLUSH ALL IN app"]);
    ok(
        dir.path(),
        &[
            "-c",
            "DELETE FROM app.config WHERE k = 'a'",
            "-c",
            "STORAGE FLUSH TABLE app.config",
        ],
    );
    ok(dir.path(), &["-c", "STORAGE COMPACT TABLE app.config"]);
    let manifest = ok(
        dir.path(),
        &["--format", "csv", "-c", "SHOW MANIFEST FOR app.config"],
    );
    assert_eq!(manifest.lines().count(), 2, "{manifest}");
    let stats = ok(
        dir.path(),
        &["--format", "json", "-c", "SHOW STATS FOR TABLE app.config"],
    );
    let row: serde_json::Value = serde_json::from_str(stats.lines().next().unwrap_or("")).unwrap();
    assert_eq!(row["file_rows"], 1, "{stats}");
    assert_eq!(stats.lines().count(), 1, "one scope: {stats}");
    let jobs = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT kind, status FROM system.jobs WHERE status = 'completed' ORDER BY kind",
        ],
    );
    assert!(
        jobs.contains("compaction,completed") && jobs.contains("flush,completed"),
        "{jobs}"
    );
    let cols = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'config' ORDER BY ordinal",
        ],
    );
    assert_eq!(cols, "column_name\nk\nv\n");
    let tables = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT table_name, table_type FROM information_schema.tables ORDER BY table_name",
        ],
    );
    assert_eq!(tables, "table_name,table_type\nconfig,SHARED\nnotes,USER\n");
    let storages = ok(dir.path(), &["--format", "csv", "-c", "SHOW STORAGES"]);
    assert!(storages.contains("local,rocksdb"), "{storages}");
    ok(dir.path(), &["-c", "STORAGE CHECK local"]);
    let mem = dir.path().join("mem");
    ok(
        dir.path(),
        &[
            "-c",
            &format!(
                "CREATE STORAGE fast TYPE filesystem PATH '{}' ENGINE object_store",
                mem.display()
            ),
        ],
    );
    ok(
        dir.path(),
        &[
            "-c",
            "CREATE TABLE app.kv (k TEXT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'fast')",
            "-c",
            "INSERT INTO app.kv VALUES ('x', 'y')",
            "-c",
            "STORAGE FLUSH TABLE app.kv",
        ],
    );
    assert!(mem.join("cold/app/kv").is_dir());
    let (success, _, stderr) = run(dir.path(), &["-c", "DROP STORAGE fast"]);
    assert!(
        !success && stderr.contains("used by table app.kv"),
        "{stderr}"
    );
    ok(dir.path(), &["-c", "DROP NAMESPACE app CASCADE"]);
    ok(dir.path(), &["-c", "DROP STORAGE fast"]);
}

/// `(id, body)` of every row of an exported table's Parquet file in the zip.
fn exported_rows(zip: &std::path::Path, entry: &str) -> Vec<(i64, String)> {
    use arrow::array::AsArray;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).unwrap()).unwrap();
    let mut parquet = tempfile::tempfile().unwrap();
    std::io::copy(&mut archive.by_name(entry).unwrap(), &mut parquet).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(parquet)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch.column_by_name("id").unwrap();
        let ids = ids.as_primitive::<arrow::datatypes::Int64Type>();
        let bodies = batch.column_by_name("body").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            rows.push((ids.value(i), bodies.value(i).to_owned()));
        }
    }
    rows
}

#[test]
fn export_streams_one_users_resolved_rows_and_import_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    let values: Vec<String> = (1..=300)
        .map(|i| format!("({i}, 'note {i}', {i})"))
        .collect();
    ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "-c",
            &format!(
                "INSERT INTO app.notes (id, body, n) VALUES {}",
                values.join(", ")
            ),
            "-c",
            "STORAGE FLUSH ALL",
            "-c",
            "DELETE FROM app.notes WHERE id = 1",
            "-c",
            "UPDATE app.notes SET body = 'changed' WHERE id = 2",
            "-c",
            "INSERT INTO app.notes (id, body, at) VALUES (301, 'hot', '2026-12-01T10:00:00')",
        ],
    );
    ok(
        dir.path(),
        &[
            "--user",
            "bob",
            "-c",
            "INSERT INTO app.notes (id, body) VALUES (1, 'bob')",
        ],
    );
    let select = |user: &str, body: &str| {
        let sql = format!("SELECT id, {body} AS body, n, at FROM app.notes ORDER BY id");
        ok(dir.path(), &["--user", user, "--format", "csv", "-c", &sql])
    };
    let before = select("alice", "body");
    assert_eq!(before.lines().count(), 301, "{before}");

    let zip = dir.path().join("alice.zip");
    let export = format!("EXPORT USER DATA 'alice' TO '{}'", zip.display());
    let (success, _, stderr) = run(dir.path(), &["-c", &export]);
    assert!(success, "{stderr}");
    assert!(stderr.contains("1 table(s), 300 row(s)"), "{stderr}");
    // The zip holds exactly the rows a SELECT shows, and the table's definition.
    let mut exported = exported_rows(&zip, "app/notes.parquet");
    exported.sort();
    let shown: Vec<(i64, String)> = before
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells = l.split(',');
            let id = cells.next().unwrap().parse().unwrap();
            (id, cells.next().unwrap().to_owned())
        })
        .collect();
    assert_eq!(exported, shown);
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    assert!(archive.by_name("app/notes.definition.pb").is_ok());

    // Drop alice's rows and rename a column: the import puts the rows back, by column id.
    ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "-c",
            "DELETE FROM app.notes",
            "-c",
            "ALTER TABLE app.notes RENAME COLUMN body TO text",
        ],
    );
    assert_eq!(select("alice", "text").lines().count(), 1);
    let import = format!("IMPORT USER DATA 'alice' FROM '{}'", zip.display());
    let (success, _, stderr) = run(dir.path(), &["-c", &import]);
    assert!(success, "{stderr}");
    assert!(stderr.contains("1 table(s), 300 row(s)"), "{stderr}");
    assert_eq!(select("alice", "text"), before);
    assert_eq!(select("bob", "text"), "id,body,n,at\n1,bob,0,\n");
    // Both ran as jobs, with their counts.
    let jobs = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT kind, status, user_id, rows, files FROM system.jobs \
             WHERE kind IN ('export', 'import') ORDER BY job_id",
        ],
    );
    assert_eq!(
        jobs,
        "kind,status,user_id,rows,files\nexport,completed,alice,300,1\nimport,completed,alice,300,1\n"
    );
}

#[test]
fn version_names_commit_and_build_date() {
    let out = Command::cargo_bin("kalamstore")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("commit") && text.contains("built"), "{text}");
}

/// Each bad statement fails with an error and leaves the data as it was.
#[test]
fn malformed_input_fails_cleanly_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    ok(
        dir.path(),
        &["-c", "INSERT INTO app.config VALUES ('a', '1')"],
    );
    ok(
        dir.path(),
        &[
            "--user",
            "u1",
            "-c",
            "INSERT INTO app.notes (id, body) VALUES (1, 'x')",
        ],
    );
    let bad: Vec<String> = [
        "INSERT INTO app.config VALUES ('b', 2)",
        "INSERT INTO app.config VALUES (1, '2')",
        "INSERT INTO app.config VALUES ('b')",
        "INSERT INTO app.config VALUES ('b', '1', '2')",
        "INSERT INTO app.config (k, nope) VALUES ('b', '1')",
        "INSERT INTO config VALUES ('b', '1')",
        "INSERT INTO nope.config VALUES ('b', '1')",
        "INSERT INTO app.nope VALUES ('b', '1')",
        "INSERT INTO app.config VALUES ('a', 'dup')",
        "INSERT INTO app.config VALUES ('b', '1'), ('a', 'dup')",
        "INSERT INTO app.config VALUES (NULL, '1')",
        "INSERT INTO app.config VALUES ('unterminated)",
        "INSERT INTO app.config VALUES ('b', $1)",
        "UPDATE app.config SET nope = '1' WHERE k = 'a'",
        "UPDATE app.config SET v = 5 WHERE k = 'a'",
        "UPDATE app.config SET k = 'z' WHERE k = 'a'",
        "DELETE FROM app.config WHERE nope = 1",
        "DELETE FROM app.config WHERE k = 1",
        "SELECT nope FROM app.config",
        "SELECT * FROM app.config ORDER BY nope",
        "SELECT * FROM app.config LIMIT -1",
        "SELECT * FROM config",
        "SELEKT * FROM app.config",
        "CREATE TABLE app.bad (id BIGINT)",
        "CREATE TABLE app.bad (id WIBBLE PRIMARY KEY)",
        "CREATE TABLE app.bad (id BIGINT PRIMARY KEY) WITH (STORAGE_ID = 'nowhere')",
        "CREATE TABLE app.bad (id BIGINT PRIMARY KEY) WITH (COLOUR = 'red')",
        "CREATE STREAM TABLE app.bad (id BIGINT PRIMARY KEY)",
        "CREATE TABLE app.config (k TEXT PRIMARY KEY)",
        "CREATE TABLE nons.bad (id BIGINT PRIMARY KEY)",
        "CREATE TABLE app.bad (id INT PRIMARY KEY DEFAULT 'x')",
        "CREATE STORAGE s TYPE ftp PATH '/tmp/x'",
        "CREATE STORAGE s TYPE filesystem ENGINE wibble",
        "CREATE STORAGE s TYPE s3 PATH 's3://b/p' CONFIG 'not json'",
        "DROP STORAGE local",
        "DROP TABLE app.nope",
        "DROP NAMESPACE app",
        "STORAGE FLUSH TABLE app.nope",
        "STORAGE FLUSH TABLE app.notes FOR USER 'Bad User'",
        "KILL JOB 'j-none'",
        "EXECUTE AS USER 'u1' (EXECUTE AS USER 'u2' (SELECT * FROM app.notes))",
        "SHOW WIBBLES",
        "EXECUTE AS USER 'Bad User' (SELECT * FROM app.notes)",
        "INSERT INTO app.notes (id, body, at) VALUES (2, 'x', 'yesterday')",
        "INSERT INTO app.notes (id, body, n) VALUES (2, 'x', 99999999999)",
        "ALTER TABLE app.notes DROP COLUMN id",
        "ALTER TABLE app.notes RENAME COLUMN id TO key",
        "ALTER TABLE app.notes MODIFY COLUMN n SMALLINT",
        "ALTER TABLE app.notes MODIFY COLUMN body INT",
        "ALTER TABLE app.notes ALTER COLUMN n TYPE WIBBLE",
        "ALTER TABLE app.notes ADD COLUMN x INT NOT NULL",
        "ALTER TABLE app.notes ADD COLUMN body TEXT",
        "ALTER TABLE app.notes RENAME COLUMN body TO n",
        "ALTER TABLE app.notes DROP COLUMN nope",
        "ALTER TABLE app.notes SET STORAGE nowhere",
        "ALTER TABLE app.notes SET TBLPROPERTIES (COLOUR = 'red')",
        "ALTER TABLE app.notes SET TBLPROPERTIES (TTL_SECONDS = 5)",
        "ALTER TABLE app.notes SET TBLPROPERTIES (FLUSH_POLICY = 'rows:0')",
        "ALTER TABLE app.notes SET TBLPROPERTIES (ACCESS_LEVEL = 'everyone')",
        "ALTER TABLE app.nope ADD COLUMN x INT",
        "ALTER TABLE app.notes TRUNCATE",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(bad.len() >= 30);
    for sql in &bad {
        let (success, _, stderr) = run(dir.path(), &["--user", "u1", "-c", sql]);
        let shown: String = sql.chars().take(80).collect();
        assert!(!success, "{shown} succeeded");
        assert!(stderr.contains("error"), "{shown}: {stderr}");
        assert!(!stderr.contains("panicked"), "{shown}: {stderr}");
    }
    // Too large for a command line: a huge literal comes from a file.
    let huge = dir.path().join("huge.sql");
    std::fs::write(
        &huge,
        format!(
            "INSERT INTO app.config VALUES ('h', '{}');",
            "x".repeat(17 << 20)
        ),
    )
    .unwrap();
    let (success, _, stderr) = run(dir.path(), &["--file", huge.to_str().unwrap()]);
    assert!(
        !success && stderr.contains("limit"),
        "{}",
        &stderr[..stderr.len().min(300)]
    );
    let config = ok(
        dir.path(),
        &["--format", "csv", "-c", "SELECT * FROM app.config"],
    );
    assert_eq!(config, "k,v\na,1\n");
    let notes = ok(
        dir.path(),
        &[
            "--user",
            "u1",
            "--format",
            "csv",
            "-c",
            "SELECT id, body FROM app.notes",
        ],
    );
    assert_eq!(notes, "id,body\n1,x\n");
    let tables = ok(dir.path(), &["--format", "csv", "-c", "SHOW TABLES"]);
    assert_eq!(tables.lines().count(), 3, "{tables}");
    let columns = ok(
        dir.path(),
        &["--format", "csv", "-c", "DESCRIBE TABLE app.notes"],
    );
    assert!(
        columns.contains("body") && !columns.contains(",x,"),
        "{columns}"
    );
}

#[test]
fn alter_table_changes_columns_options_and_storage() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    let notes = |sql: &str| ok(dir.path(), &["--user", "u1", "--format", "csv", "-c", sql]);
    notes("INSERT INTO app.notes (id, body, n) VALUES (1, 'old', 7), (2, 'gone', 8)");
    ok(dir.path(), &["-c", "STORAGE FLUSH TABLE app.notes"]);
    notes("INSERT INTO app.notes (id, body) VALUES (3, 'hot')");
    let archive = dir.path().join("archive");
    let out = run(
        dir.path(),
        &[
            "-c",
            "ALTER TABLE app.notes ADD COLUMN tag TEXT NOT NULL DEFAULT 'none'",
            "-c",
            "ALTER TABLE app.notes RENAME COLUMN body TO text",
            "-c",
            "ALTER TABLE app.notes MODIFY COLUMN n BIGINT",
            "-c",
            &format!(
                "CREATE STORAGE archive TYPE filesystem PATH '{}'",
                archive.display()
            ),
            "-c",
            "ALTER TABLE app.notes SET STORAGE archive",
        ],
    );
    assert!(out.0, "{}", out.2);
    assert!(out.2.contains("schema version 4"), "{}", out.2);
    assert!(
        out.2.contains("MOVE app.notes to archive: job"),
        "{}",
        out.2
    );
    notes("DELETE FROM app.notes WHERE id = 2");
    assert_eq!(
        notes("SELECT id, text, n, tag FROM app.notes ORDER BY id"),
        "id,text,n,tag\n1,old,7,none\n3,hot,0,none\n"
    );
    let on = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT storage_id FROM system.tables WHERE table_name = 'notes'",
        ],
    );
    assert_eq!(on, "storage_id\narchive\n");
    assert!(
        std::fs::read_dir(archive.join("cold"))
            .unwrap()
            .next()
            .is_some()
    );
    ok(
        dir.path(),
        &[
            "-c",
            "ALTER TABLE app.notes SET TBLPROPERTIES (STORAGE_ID = 'local', FLUSH_POLICY = 'rows:100')",
        ],
    );
    let cold_files = std::fs::read_dir(archive.join("cold").join("app"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(cold_files, 0, "the archive storage still holds the table");
    assert_eq!(
        notes("SELECT id, text FROM app.notes ORDER BY id"),
        "id,text\n1,old\n3,hot\n"
    );
    let jobs = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT kind, status FROM system.jobs WHERE kind = 'move'",
        ],
    );
    assert_eq!(jobs, "kind,status\nmove,completed\nmove,completed\n");
}

#[test]
fn a_failing_statement_in_a_file_names_its_line_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.sql");
    std::fs::write(&script, format!("{SETUP}\n\nINSERT INTO app.config VALUES ('a', 1);\nINSERT INTO app.config VALUES ('b', '2');\n")).unwrap();
    let (success, _, stderr) = run(dir.path(), &["--file", script.to_str().unwrap()]);
    assert!(!success);
    assert!(stderr.contains("s.sql:5"), "{stderr}");
    let out = ok(
        dir.path(),
        &["--format", "csv", "-c", "SELECT COUNT(*) FROM app.config"],
    );
    assert_eq!(
        out, "count\n0\n",
        "execution stopped at the failing statement"
    );
    let (success, _, stderr) = run(
        dir.path(),
        &["--continue-on-error", "--file", script.to_str().unwrap()],
    );
    assert!(!success && stderr.contains("failed"), "{stderr}");
    let out = ok(
        dir.path(),
        &["--format", "csv", "-c", "SELECT COUNT(*) FROM app.config"],
    );
    assert_eq!(out, "count\n1\n");
}

#[test]
fn catalog_statements_and_views_cover_every_kind_of_object() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    let ns = ok(dir.path(), &["--format", "csv", "-c", "SHOW NAMESPACES"]);
    assert_eq!(ns, "namespace\napp\n");
    let described = ok(
        dir.path(),
        &["--format", "csv", "-c", "DESCRIBE TABLE app.notes"],
    );
    assert!(
        described.contains("notes,id,0,BIGINT,false,true"),
        "{described}"
    );
    assert!(
        described.contains("notes,n,2,INT,true,false,0"),
        "{described}"
    );
    let in_ns = ok(dir.path(), &["--format", "csv", "-c", "SHOW TABLES IN app"]);
    assert_eq!(in_ns.lines().count(), 3, "{in_ns}");
    ok(
        dir.path(),
        &[
            "-c",
            "CREATE STORAGE scratch TYPE memory",
            "-c",
            "CREATE STREAM TABLE app.events (id BIGINT PRIMARY KEY, kind TEXT) WITH (TTL_SECONDS = 60, STORAGE_ID = 'scratch')",
        ],
    );
    let cached = dir.path().join("cached");
    ok(
        dir.path(),
        &[
            "-c",
            &format!(
                "CREATE STORAGE warm TYPE filesystem PATH '{}' CACHE (MEMORY '8MB', DISK '32MB')",
                cached.display()
            ),
        ],
    );
    ok(
        dir.path(),
        &[
            "-c",
            "CREATE TABLE app.kv (k TEXT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'warm')",
            "-c",
            "INSERT INTO app.kv VALUES ('a', NULL), ('b', 'x'), ('c', 'y')",
            "-c",
            "STORAGE FLUSH TABLE app.kv",
        ],
    );
    let nulls = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT k FROM app.kv WHERE v IS NULL",
        ],
    );
    assert_eq!(nulls, "k\na\n");
    let paged = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT k FROM app.kv WHERE v IS NOT NULL ORDER BY k DESC LIMIT 1 OFFSET 1",
        ],
    );
    assert_eq!(paged, "k\nb\n");
    let storages = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT storage_id, engine FROM system.storages ORDER BY storage_id",
        ],
    );
    assert_eq!(
        storages,
        "storage_id,engine\nlocal,rocksdb\nscratch,memory\nwarm,rocksdb\n"
    );
    let tables = ok(
        dir.path(),
        &[
            "--format",
            "csv",
            "-c",
            "SELECT table_name, storage_id FROM system.tables WHERE table_type = 'STREAM'",
        ],
    );
    assert_eq!(tables, "table_name,storage_id\nevents,scratch\n");
    ok(
        dir.path(),
        &[
            "-c",
            "DROP TABLE app.kv",
            "-c",
            "DROP TABLE IF EXISTS app.kv",
        ],
    );
    assert!(
        !cached
            .join("cold/app/kv")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    );
    ok(dir.path(), &["-c", "DROP STORAGE warm"]);
}

/// A storage on the local S3-compatible server that `make test` starts. Without the server
/// the test fails, unless `KALAMSTORE_SKIP_S3=1` says to skip it (`kalamstore_tests::s3_server`,
/// the gate every S3 test shares).
#[test]
fn an_s3_storage_holds_a_table() {
    let Some(server) = kalamstore_tests::s3_server() else {
        return;
    };
    let bucket = server.bucket;
    let endpoint = server.options.endpoint.unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("cli-{}", std::process::id());
    let config = format!(
        r#"{{"endpoint": "{endpoint}", "region": "us-east-1", "access_key_id": "test", "secret_access_key": "test", "allow_http": true}}"#
    );
    ok(dir.path(), &["-c", SETUP]);
    ok(
        dir.path(),
        &[
            "-c",
            &format!(
                "CREATE STORAGE remote TYPE s3 PATH 's3://{bucket}/{prefix}' CONFIG '{config}'"
            ),
        ],
    );
    ok(
        dir.path(),
        &[
            "-c",
            "CREATE TABLE app.remote_kv (k TEXT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'remote')",
            "-c",
            "INSERT INTO app.remote_kv VALUES ('a', '1'), ('b', '2')",
            "-c",
            "STORAGE FLUSH TABLE app.remote_kv",
            "-c",
            "DELETE FROM app.remote_kv WHERE k = 'a'",
        ],
    );
    let rows = ok(
        dir.path(),
        &["--format", "csv", "-c", "SELECT * FROM app.remote_kv"],
    );
    assert_eq!(rows, "k,v\nb,2\n");
    // A table moves from the local RocksDB storage to S3 and back.
    ok(
        dir.path(),
        &[
            "-c",
            "INSERT INTO app.config VALUES ('a', '1'), ('b', '2')",
            "-c",
            "STORAGE FLUSH TABLE app.config",
            "-c",
            "INSERT INTO app.config VALUES ('c', '3')",
            "-c",
            "ALTER TABLE app.config SET STORAGE remote",
            "-c",
            "DELETE FROM app.config WHERE k = 'a'",
        ],
    );
    let config = || {
        ok(
            dir.path(),
            &[
                "--format",
                "csv",
                "-c",
                "SELECT * FROM app.config ORDER BY k",
            ],
        )
    };
    assert_eq!(config(), "k,v\nb,2\nc,3\n");
    ok(
        dir.path(),
        &["-c", "ALTER TABLE app.config SET STORAGE local"],
    );
    assert_eq!(config(), "k,v\nb,2\nc,3\n");
    ok(
        dir.path(),
        &[
            "-c",
            "STORAGE CHECK remote",
            "-c",
            "DROP TABLE app.remote_kv",
            "-c",
            "DROP STORAGE remote",
        ],
    );
}

#[test]
fn the_delta_option_turns_publishing_off_and_on_and_republish_rebuilds_the_log() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "-c",
            "CREATE NAMESPACE app; CREATE SHARED TABLE app.events (id BIGINT PRIMARY KEY, kind TEXT) WITH (DELTA = 'off'); INSERT INTO app.events VALUES (1, 'a'), (2, 'b'); STORAGE FLUSH TABLE app.events",
        ],
    );
    let log = dir.path().join("data/cold/app/events/_delta_log");
    assert!(!log.exists(), "DELTA = off publishes nothing");
    let delta = |dir: &std::path::Path| {
        ok(
            dir,
            &[
                "--format",
                "csv",
                "-c",
                "SELECT delta FROM system.tables WHERE table_name = 'events'",
            ],
        )
    };
    assert_eq!(delta(dir.path()), "delta\noff\n");

    let said = |args: &[&str]| {
        let (success, stdout, stderr) = run(dir.path(), args);
        assert!(success, "{args:?} failed:\n{stderr}");
        format!("{stdout}{stderr}")
    };
    let set = said(&[
        "-c",
        "ALTER TABLE app.events SET TBLPROPERTIES (DELTA = 'with_system_columns')",
    ]);
    assert!(set.contains("DELTA with_system_columns"), "{set}");
    assert_eq!(delta(dir.path()), "delta\nwith_system_columns\n");
    let commits = || {
        std::fs::read_dir(&log)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(commits(), 1, "turned on: one commit with the flushed file");
    let first = std::fs::read_to_string(log.join("00000000000000000000.json")).unwrap();
    assert!(
        first.contains("\\\"_seq\\\""),
        "system columns published: {first}"
    );

    let republished = said(&["-c", "ALTER TABLE app.events REPUBLISH"]);
    assert!(republished.contains("completed"), "{republished}");
    assert_eq!(commits(), 1, "rebuilt from scratch");

    let (success, _, stderr) = run(
        dir.path(),
        &[
            "-c",
            "ALTER TABLE app.events SET TBLPROPERTIES (DELTA = 'sometimes')",
        ],
    );
    assert!(
        !success && stderr.contains("on, off, with_system_columns"),
        "{stderr}"
    );
}

/// A user who drives kalamstore with one-shot commands (as with sqlite3) still gets its
/// maintenance: every run ends with the work that is due, so a `rows:N` policy flushes, expired
/// STREAM rows leave the hot engine and job records stay within `--keep-jobs`.
#[test]
fn one_shot_runs_keep_the_hot_buffer_and_the_job_records_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let run_bounded = |args: &[&str]| {
        let mut all = vec!["--keep-jobs", "3", "--cleanup-interval", "0"];
        all.extend_from_slice(args);
        ok(dir.path(), &all)
    };
    let figure = |sql: &str| -> i64 {
        let out = run_bounded(&["--format", "csv", "-c", sql]);
        let value = out.lines().nth(1).unwrap_or_default();
        value.parse().unwrap_or_else(|_| panic!("{sql}: {out}"))
    };
    run_bounded(&[
        "-c",
        "CREATE NAMESPACE app;
         CREATE SHARED TABLE app.log (id BIGINT PRIMARY KEY, body TEXT) WITH (FLUSH_POLICY = 'rows:10');
         CREATE STREAM TABLE app.typing (id BIGINT PRIMARY KEY, who TEXT) WITH (TTL_SECONDS = 1)",
    ]);
    for run in 0..6 {
        let values: Vec<String> = (0..4).map(|i| format!("({}, 'm')", run * 4 + i)).collect();
        run_bounded(&[
            "-c",
            &format!(
                "INSERT INTO app.log VALUES {}; INSERT INTO app.typing VALUES ({run}, 'ann')",
                values.join(", ")
            ),
        ]);
    }
    let stats = "FROM system.stats WHERE table_name = 'log'";
    let hot = figure(&format!("SELECT sum(hot_rows) {stats}"));
    let flushed = figure(&format!("SELECT sum(file_rows) {stats}"));
    assert!(hot < 10, "{hot} rows buffered past the rows:10 policy");
    assert_eq!(hot + flushed, 24);
    assert_eq!(figure("SELECT count(*) FROM app.log"), 24);
    let jobs = figure("SELECT count(*) FROM system.jobs");
    assert!(jobs <= 4, "{jobs} job records kept with --keep-jobs 3");

    // The STREAM rows expire one second after their write; `maintain` (cron's command) removes
    // them from the hot engine.
    let typing = "SELECT coalesce(sum(hot_rows), 0) FROM system.stats WHERE table_name = 'typing'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        run_bounded(&["maintain"]);
        if figure(typing) == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired STREAM rows still in the hot engine"
        );
    }
}

/// `SHOW STATS` reports a cached storage's counters; a later process finds the file cache
/// warm and answers the same query from it without a miss.
#[test]
fn show_stats_reports_the_cache_and_a_later_process_reopens_it_warm() {
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("fast");
    let create = format!(
        "CREATE STORAGE fast TYPE filesystem PATH '{}' CACHE (MEMORY '8MB', DISK '32MB')",
        fast.display()
    );
    let query = "SELECT * FROM app.t ORDER BY id";
    let stats = "SHOW STATS";
    ok(
        dir.path(),
        &[
            "-c",
            &create,
            "-c",
            "CREATE NAMESPACE app",
            "-c",
            "CREATE TABLE app.t (id BIGINT PRIMARY KEY, v TEXT) WITH (STORAGE_ID = 'fast')",
            "-c",
            "INSERT INTO app.t VALUES (1, 'a'), (2, 'b')",
            "-c",
            "STORAGE FLUSH TABLE app.t",
        ],
    );
    let first = ok(
        dir.path(),
        &["--format", "csv", "-c", query, "-c", query, "-c", stats],
    );
    assert!(first.contains("fast,files,"), "{first}");
    let files = |out: &str| -> Vec<String> {
        let line = out.lines().find(|l| l.starts_with("fast,files,")).unwrap();
        line.split(',').map(str::to_owned).collect()
    };
    // storage_id, tier, hits, misses, hit_ratio, hit_bytes, miss_bytes, warm_start
    let first_stats = files(&first);
    assert_ne!(first_stats[2], "0", "the second query hit: {first}");
    // The setup run closed cleanly, so this process already found the disk tier warm.
    assert_eq!(first_stats[7], "true", "{first}");
    let second = ok(dir.path(), &["--format", "csv", "-c", query, "-c", stats]);
    let warm = files(&second);
    assert_eq!(
        (warm[3].as_str(), warm[7].as_str()),
        ("0", "true"),
        "{second}"
    );
    assert!(second.starts_with("id,v\n1,a\n2,b\n"), "{second}");
}

#[test]
fn a_subscription_prints_its_rows_and_ends_at_until_rows_or_timeout() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    for (user, id) in [("alice", 1), ("bob", 2), ("alice", 3)] {
        let insert = format!("INSERT INTO app.notes (id, body) VALUES ({id}, '{user}')");
        ok(dir.path(), &["--user", user, "-c", &insert]);
    }
    ok(dir.path(), &["-c", "STORAGE FLUSH ALL"]);
    ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "-c",
            "DELETE FROM app.notes WHERE id = 1",
        ],
    );
    // The operator's feed: every change with its user, in `_seq` order.
    let feed = ok(
        dir.path(),
        &[
            "--all-users",
            "--format",
            "csv",
            "-c",
            "SELECT _op, _user, id, body FROM changes_since('app.notes', 0) ORDER BY _seq",
        ],
    );
    assert_eq!(
        feed,
        "_op,_user,id,body\ninsert,alice,1,alice\ninsert,bob,2,bob\ninsert,alice,3,alice\n\
         delete,alice,1,alice\n"
    );
    // A subscription's initial data, cut at two rows.
    let (success, stdout, stderr) = run(
        dir.path(),
        &[
            "--all-users",
            "--format",
            "json",
            "--until-rows",
            "2",
            "-c",
            "SUBSCRIBE TO app.notes FOR ALL USERS",
        ],
    );
    assert!(success, "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows.iter().all(|r| r["_op"] == "insert"));
    assert!(stderr.contains("2 rows"), "{stderr}");
    // Nothing new arrives: the timeout ends it.
    let (success, stdout, stderr) = run(
        dir.path(),
        &[
            "--user",
            "bob",
            "--format",
            "csv",
            "--timeout",
            "0.3",
            "-c",
            "SUBSCRIBE TO app.notes OPTIONS (last_rows = 0)",
        ],
    );
    assert!(success, "{stderr}");
    assert_eq!(stdout, "_seq,_op,id,body,n,at\n");
    assert!(stderr.contains("0 rows"), "{stderr}");
    // A user may not follow everyone.
    let (success, _, stderr) = run(
        dir.path(),
        &[
            "--user",
            "bob",
            "-c",
            "SUBSCRIBE TO app.notes FOR ALL USERS",
        ],
    );
    assert!(!success);
    assert!(stderr.contains("permission denied"), "{stderr}");
    let (success, _, stderr) = run(dir.path(), &["--timeout=-1", "-c", "SELECT 1"]);
    assert!(!success);
    assert!(stderr.contains("--timeout"), "{stderr}");
}

#[test]
fn copy_moves_rows_through_parquet_and_json_lines_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    ok(p, &["-c", SETUP]);
    ok(
        p,
        &[
            "-c",
            "INSERT INTO app.config SELECT 'k' || value, 'v' || value FROM generate_series(1, 25000)",
            "-c",
            "CREATE SHARED TABLE app.copied (k TEXT PRIMARY KEY, v TEXT)",
        ],
    );
    // Parquet: written as the rows come, read back in batches, typed by column name.
    let parquet = p.join("config.parquet");
    let (success, _, stderr) = run(
        p,
        &[
            "-c",
            &format!("COPY app.config TO '{}'", parquet.display()),
            "-c",
            &format!("COPY app.copied FROM '{}'", parquet.display()),
        ],
    );
    assert!(success, "{stderr}");
    assert_eq!(stderr.matches("COPY 25000").count(), 2, "{stderr}");
    let same =
        "SELECT count(*) AS c FROM app.copied c JOIN app.config o ON c.k = o.k AND c.v = o.v";
    assert_eq!(ok(p, &["--format", "csv", "-c", same]), "c\n25000\n");

    // JSON lines: one object per line, fields by name (others ignored), NULL where absent.
    let json = p.join("notes.json");
    std::fs::write(
        &json,
        "{\"id\": 1, \"body\": \"one\", \"n\": 10, \"extra\": true}\n{\"id\": 2, \"body\": \"two\"}\n",
    )
    .unwrap();
    let (success, _, stderr) = run(
        p,
        &[
            "--user",
            "alice",
            "-c",
            &format!("COPY app.notes FROM '{}'", json.display()),
        ],
    );
    assert!(success, "{stderr}");
    assert!(stderr.contains("COPY 2"), "{stderr}");
    let back = p.join("back.jsonl");
    let (success, _, stderr) = run(
        p,
        &[
            "--user",
            "alice",
            "-c",
            &format!(
                "COPY (SELECT id, body, n FROM app.notes ORDER BY id) TO '{}'",
                back.display()
            ),
        ],
    );
    assert!(success, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "{\"id\":1,\"body\":\"one\",\"n\":10}\n{\"id\":2,\"body\":\"two\",\"n\":null}\n"
    );

    // A Parquet value that does not fit its column names its row; nothing of the batch lands.
    let bad = p.join("bad.parquet");
    ok(
        p,
        &[
            "-c",
            &format!(
                "COPY (SELECT CAST(value AS BIGINT) AS id, 'b' AS body, \
                 CASE WHEN value = 13 THEN 'three' ELSE '1' END AS n \
                 FROM generate_series(10, 13)) TO '{}'",
                bad.display()
            ),
        ],
    );
    let (success, _, stderr) = run(
        p,
        &[
            "--user",
            "alice",
            "-c",
            &format!("COPY app.notes FROM '{}'", bad.display()),
        ],
    );
    assert!(!success);
    assert!(
        stderr.contains("row 4") && stderr.contains("`three`"),
        "{stderr}"
    );
    let count = "SELECT count(*) AS c FROM app.notes";
    assert_eq!(
        ok(p, &["--user", "alice", "--format", "csv", "-c", count]),
        "c\n2\n"
    );
}

#[test]
fn copy_loads_a_csv_file_in_batches_and_writes_a_query_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["-c", SETUP]);
    let input = dir.path().join("config.csv");
    let mut text = String::from("k,v\n");
    for i in 0..12_345 {
        text.push_str(&format!("key{i},\"value, {i}\"\n"));
    }
    std::fs::write(&input, &text).unwrap();
    let (success, _, stderr) = run(
        dir.path(),
        &[
            "-c",
            &format!(
                "COPY app.config FROM '{}' WITH (FORMAT csv, HEADER true)",
                input.display()
            ),
        ],
    );
    assert!(success, "{stderr}");
    assert!(stderr.contains("COPY 12345"), "{stderr}");
    let output = dir.path().join("out.csv");
    let (success, _, stderr) = run(
        dir.path(),
        &[
            "-c",
            &format!(
                "COPY (SELECT k, v FROM app.config WHERE k IN ('key1', 'key2') ORDER BY k) TO '{}'",
                output.display()
            ),
        ],
    );
    assert!(success, "{stderr}");
    assert!(stderr.contains("COPY 2"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        "k,v\nkey1,\"value, 1\"\nkey2,\"value, 2\"\n"
    );
    // A record that does not fit names its line; its batch writes nothing.
    let bad = dir.path().join("notes.csv");
    std::fs::write(&bad, "1,a,1\n2,b,two\n").unwrap();
    let (success, _, stderr) = run(
        dir.path(),
        &[
            "--user",
            "alice",
            "-c",
            &format!("COPY app.notes (id, body, n) FROM '{}'", bad.display()),
        ],
    );
    assert!(!success);
    assert!(
        stderr.contains("line 2") && stderr.contains("`two`"),
        "{stderr}"
    );
    let out = ok(
        dir.path(),
        &[
            "--user",
            "alice",
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS c FROM app.notes",
        ],
    );
    assert_eq!(out, "c\n0\n");
}
