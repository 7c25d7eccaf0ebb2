//! Shards: job tables, DuckDB workers, expiry wheels, counters.
