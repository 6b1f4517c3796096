"""Long-running work on a job: followers, the collector, LiveSession (one follower and one metrics state per
job), the supervisor, dashboard sources, the demo. May import jobs, records, remote, the core; never tui."""
