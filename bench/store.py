"""The object store's cost: the same real-time streams on the local tree and on S3, side by side in one run.

    python -m bench.store [--segments 8] [--workers 2] [--streams 1] [--rounds 2]

For each store in turn, alternated `--rounds` times (local, s3, local, s3 ...): a fresh MariaDB database,
a private gearmand, `--workers` real `python -m server.segment_processor` subprocesses and the app served
over HTTP (bench.live_latency's stack), with MEDIA_STORE=local (MEDIA_ROOT) or MEDIA_STORE=s3 (a fresh
prefix in a fresh bucket of the S3 gateway at S3_ENDPOINT_URL or TEST_S3_ENDPOINT_URL, default the
project's Ceph RADOS Gateway on 127.0.0.1:7480, scripts/services.sh). `--streams` phones record in real
time (bench.live_latency's phones and 100 ms pollers). Printed per store: upload response -> first listed
in the HLS media playlist and the DASH MPD (p50, p95), the worker's job time (encode, store, package,
publish) and whether the streams were sustained; then s3 minus local for each p50 (the issue's budget:
+0.3 s). Everything started here is stopped on the way out.
"""

from __future__ import annotations

import argparse
import os
import time

from bench.common import percentile, store_config
from bench.live_latency import (
    make_segments,
    run_streams,
    served_stack,
    summarize,
    worker_job_times,
)
from tests.harness import s3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=8, help="segments per stream (3 s each, default 8)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--streams", type=int, default=1, help="concurrent real-time streams (default 1)")
    parser.add_argument("--rounds", type=int, default=2, help="local/s3 alternations (default 2)")
    args = parser.parse_args(argv)
    store_config("s3")  # the gateway is up, and the bucket made
    bucket = os.environ["BENCH_S3_BUCKET"]
    started = time.monotonic()
    seen: dict[str, dict[str, list[float]]] = {
        "local": {"hls": [], "dash": [], "job": []},
        "s3": {"hls": [], "dash": [], "job": []},
    }
    try:
        segments: list[bytes] | None = None
        for round_ in range(args.rounds):
            for name in ("local", "s3"):
                with served_stack(args.workers, **store_config(name)) as stack:
                    if segments is None:
                        segments = [p.read_bytes() for p in make_segments(stack.tmp / "phone", args.segments)]
                    streams = run_streams(stack.base_url, args.streams, segments)
                    step = summarize(args.streams, streams, args.segments)
                    jobs = worker_job_times(stack.tmp / "workers.log")
                seen[name]["hls"] += step.hls
                seen[name]["dash"] += step.dash
                seen[name]["job"] += jobs
                verdict = "sustained" if step.sustained else "NOT sustained"
                print(
                    f"round {round_ + 1} {name:5}: {args.streams} stream(s) {verdict}, missing {step.missing}; "
                    f"upload -> HLS p50 {percentile(step.hls, 50):.2f} s, DASH p50 {percentile(step.dash, 50):.2f} s; "
                    f"worker job p50 {percentile(jobs, 50):.2f} s" + "".join(f"; error {e}" for e in step.errors)
                )
    finally:
        s3.remove_bucket(bucket)
    print(f"all rounds ({args.rounds} x {args.streams} stream(s) x {args.segments} segments per store, {args.workers} workers):")
    for name, values in seen.items():
        print(
            f"  {name:5}  upload -> HLS p50 {percentile(values['hls'], 50):.2f} s p95 {percentile(values['hls'], 95):.2f} s; "
            f"-> DASH p50 {percentile(values['dash'], 50):.2f} s; worker job p50 {percentile(values['job'], 50):.2f} s"
        )
    for what in ("hls", "dash", "job"):
        diff = percentile(seen["s3"][what], 50) - percentile(seen["local"][what], 50)
        print(f"  s3 - local, {what} p50: {diff:+.2f} s")
    print(f"total run time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
