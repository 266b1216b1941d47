"""What the rate limits cost an upload: the same request with and without its two counters in memcached.

    python -m bench.limits [--requests 1500]

The real app on a fresh database, a private gearmand and a private memcached (the counters' store, as in
production), driven in-process by Flask's test client. Each request is an upload with no file part: it
passes both limit checks (limits raised out of reach), looks the video up and is refused with 400, so the
counters are a visible share of it. Limited and unlimited requests alternate (the view with and without the
limiter's wrappers), so load from other processes hits both alike; the difference of medians is the cost.
"""

from __future__ import annotations

import argparse
import time

from bench.common import percentile, stack
from tests.harness.android import segment_upload
from tests.harness.services import Memcached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    memcached = Memcached().start()
    try:
        unlimited = "1000000/minute"
        with stack(
            MEMCACHED_SERVERS=(memcached.address,), RATE_LIMIT_UPLOAD=unlimited, RATE_LIMIT_UPLOAD_PER_VIDEO=unlimited
        ) as s:
            client = s.app.test_client()
            video_id = client.post("/videos", json={"title": "bench"}).json["video_id"]
            body, content_type = segment_upload(0, None)
            limited = s.app.view_functions["segmentlist"]
            plain = limited.__wrapped__.__wrapped__  # under the per-video and per-address wrappers
            times: dict[str, list[float]] = {"limited": [], "plain": []}
            for i in range(args.requests * 2):
                name = "limited" if i % 2 else "plain"
                s.app.view_functions["segmentlist"] = limited if name == "limited" else plain
                start = time.perf_counter()
                status = client.post(f"/video_segment/{video_id}", data=body, content_type=content_type).status_code
                times[name].append(time.perf_counter() - start)
                assert status == 400, status
            with_limits, without = percentile(times["limited"], 50), percentile(times["plain"], 50)
            print(f"{args.requests} requests each: p50 with limits {with_limits * 1000:.2f} ms, without {without * 1000:.2f} ms")
            print(f"two memcached counters cost {(with_limits - without) * 1000:.2f} ms per upload")
    finally:
        memcached.stop()


if __name__ == "__main__":
    main()
