-- The tables of the pgbench scripts (run as an operator; the users' rows are added per user).
CREATE NAMESPACE bench;
CREATE USER TABLE bench.events (id BIGINT PRIMARY KEY, body TEXT);
CREATE USER TABLE bench.counters (id BIGINT PRIMARY KEY, n BIGINT NOT NULL);
CREATE USER TABLE bench.trash (id BIGINT PRIMARY KEY);
