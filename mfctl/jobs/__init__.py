"""One-shot orchestration of a job: load (jobdir), create, launch, status/stop/logs, checkpoints, report,
node operations and the backend they run on. May import records, remote, render, presets, the pure core;
never live or tui."""
