\set id random(1, 1000)
SELECT id, n FROM bench.counters WHERE id = :id;
