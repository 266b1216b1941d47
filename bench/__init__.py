"""Benchmarks on real services (python -m bench.ingest, python -m bench.transcode); see bench/README.md."""
