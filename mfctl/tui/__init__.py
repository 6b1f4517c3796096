"""The ``mfctl watch`` dashboard (Textual): renders snapshots from a ``DashboardSource``; imports only metrics types, never remote, jobs, live or an SSH library."""
