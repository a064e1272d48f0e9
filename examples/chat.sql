-- A chat app on kalamstore: per-user conversations and messages (USER tables), a shared
-- directory of rooms (SHARED), and typing indicators that expire (STREAM, 30 s TTL).

CREATE NAMESPACE IF NOT EXISTS chat;

CREATE USER TABLE chat.conversations (
    id BIGINT PRIMARY KEY,
    title TEXT NOT NULL,
    created_at TIMESTAMP
);

CREATE USER TABLE chat.messages (
    id BIGINT PRIMARY KEY,
    conversation_id BIGINT NOT NULL,
    role TEXT NOT NULL DEFAULT 'user',
    body TEXT,
    sent_at TIMESTAMP
) WITH (FLUSH_POLICY = 'rows:1000,interval:60');

CREATE SHARED TABLE chat.rooms (
    name TEXT PRIMARY KEY,
    topic TEXT
);

CREATE STREAM TABLE chat.typing (
    conversation_id BIGINT PRIMARY KEY,
    user_name TEXT
) WITH (TTL_SECONDS = 30);

INSERT INTO chat.rooms VALUES ('general', 'anything goes'), ('rust', 'borrowck support group');

-- alice's data
EXECUTE AS USER 'alice' (INSERT INTO chat.conversations VALUES (1, 'Trip planning', '2026-11-01T09:00:00Z'));
EXECUTE AS USER 'alice' (INSERT INTO chat.messages (id, conversation_id, body, sent_at) VALUES
    (1, 1, 'Where should we go in May?', '2026-11-01T09:00:05Z'),
    (2, 1, 'Somewhere with mountains; and lakes -- ideally', '2026-11-01T09:01:00Z'),
    (3, 1, 'Typo in this one: Lisbn', '2026-11-01T09:02:00Z'));
EXECUTE AS USER 'alice' (INSERT INTO chat.messages (id, conversation_id, role, body) VALUES
    (4, 1, 'assistant', 'How about the Dolomites?'));

-- bob's data: the same ids, a different user, never visible to alice
EXECUTE AS USER 'bob' (INSERT INTO chat.conversations VALUES (1, 'Bob''s notes', '2026-11-02T10:00:00Z'));
EXECUTE AS USER 'bob' (INSERT INTO chat.messages (id, conversation_id, body) VALUES (1, 1, 'bob only'));

INSERT INTO chat.typing VALUES (1, 'alice');

-- Move the buffered rows to Parquet, then change flushed rows: the update and the delete are
-- applied on read by deletion vectors after the next flush.
STORAGE FLUSH TABLE chat.messages;
STORAGE FLUSH TABLE chat.conversations;
EXECUTE AS USER 'alice' (UPDATE chat.messages SET body = 'Typo fixed: Lisbon' WHERE id = 3);
EXECUTE AS USER 'alice' (DELETE FROM chat.messages WHERE id = 2);
STORAGE FLUSH TABLE chat.messages FOR USER 'alice';

-- Schema changes apply to old rows and Parquet files without rewriting them.
ALTER TABLE chat.messages ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE chat.messages RENAME COLUMN body TO content;

-- Move the conversations, files and buffered rows, to a second storage (RocksDB + Parquet in
-- <data-dir>/storages/archive), verified before the catalog switches.
CREATE STORAGE archive TYPE filesystem;
ALTER TABLE chat.conversations SET STORAGE archive;
EXECUTE AS USER 'alice' (SELECT * FROM chat.conversations);

EXECUTE AS USER 'alice' (SELECT id, role, content, pinned FROM chat.messages ORDER BY id);
EXECUTE AS USER 'bob' (SELECT id, content FROM chat.messages ORDER BY id);
EXECUTE AS USER 'alice' (SELECT COUNT(*) FROM chat.messages WHERE role = 'user');

-- Full SQL through DataFusion, over flushed files, deletion vectors and hot rows alike:
-- aggregates, joins and window functions.
EXECUTE AS USER 'alice' (SELECT role, count(*) AS messages, max(id) AS last FROM chat.messages GROUP BY role ORDER BY role);
EXECUTE AS USER 'alice' (
    SELECT c.title, m.id, row_number() OVER (PARTITION BY c.id ORDER BY m.id) AS nth
    FROM chat.conversations c JOIN chat.messages m ON m.conversation_id = c.id
    ORDER BY m.id);
SELECT * FROM chat.rooms ORDER BY name;
SELECT * FROM chat.typing;
SHOW STATS FOR TABLE chat.messages;
SELECT job_id, kind, table_name, user_id, status, rows, files FROM system.jobs ORDER BY job_id;

-- Every table's flushed state is also a Delta Lake table (<cold dir>/<ns>/<table>/_delta_log),
-- readable by Spark, DuckDB, Polars and delta-rs; REPUBLISH rebuilds a table's log.
SELECT namespace, table_name, table_type, delta FROM system.tables ORDER BY table_name;
ALTER TABLE chat.messages REPUBLISH;

-- The change feed: every insert, update and delete (flushed rows too) with its _seq. An AI
-- agent follows every user's messages with a durable consumer: CONSUME returns what it has
-- not acknowledged yet, ACK moves its cursor (kept in the catalog across restarts).
EXECUTE AS USER 'alice' (SELECT _op, id, content FROM changes_since('chat.messages', 0) ORDER BY _seq);
CREATE CONSUMER agent ON chat.messages FOR ALL USERS FROM EARLIEST;
CONSUME FROM agent LIMIT 4;
-- A live query prints rows as they commit (`make demo` runs with --timeout 1, so it ends).
SUBSCRIBE TO chat.messages FOR ALL USERS WHERE role = 'assistant' OPTIONS (last_rows = 2);
SHOW CONSUMERS;
