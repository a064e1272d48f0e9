SELECT count(*), sum(n) FROM bench.counters;
