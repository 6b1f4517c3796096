"""Test labs that need this machine's privileges (root): a real Slurm cluster on the SSH lab's nodes."""
