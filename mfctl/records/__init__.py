"""Job records: the job store (SQLite), job ids, the typed JobRecord, metrics export.
May import the pure core (cluster, jobspec, metrics) and errors only."""
