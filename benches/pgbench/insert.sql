-- One new row in a range of ids that belongs to this pgbench process (-D base=...).
\set id :base + random(1, 1000000000000000)
INSERT INTO bench.events (id, body) VALUES (:id, 'event');
