\set id random(1, 1000)
DELETE FROM bench.trash WHERE id = :id;
