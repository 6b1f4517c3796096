"""Job records: the job store (SQLite), job ids, the typed ``JobRecord`` and metrics export. May import the pure core (cluster, jobspec, metrics) and errors only."""
