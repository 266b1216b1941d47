"""What keeps the system converging and what operators run: the reaper, webhooks, purge, status checks."""
