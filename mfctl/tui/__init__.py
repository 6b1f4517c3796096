"""The `mfctl watch` dashboard (Textual); may import metrics/cluster types only, not remote/jobs/live/SSH."""
