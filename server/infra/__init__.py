"""Clients of the outside services (database, cache, Gearman, metrics) and the bundle of them; no rules."""
