\set id random(1, 1000)
UPDATE bench.counters SET n = n + 1 WHERE id = :id;
