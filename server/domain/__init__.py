"""The rules on rows: the segment state machine, changes, ingest, packaging, publishing, the worker registry."""
