"""The one test and bench harness: what tests/ AND bench/ import to stand up and drive the real stack.

- `services`: a fresh MariaDB database, private gearmand/memcached/MariaDB, gunicorn, nginx, waits with deadlines;
- `media`: phone-like segments made by ffmpeg at run time, and a CMAF fragment reader;
- `android`: the app's request bodies byte for byte (Retrofit 1.x / OkHttp);
- `stack`: the app plus worker subprocesses on one database and gearmand (`Stack`, `fresh_stack`, `upload`);
- `players`: the Chromium player driver (tests/e2e keeps its page, script and node packages);
- `clock`: `FakeClock`, to pass where the server takes a clock;
- `sse`: `SseClient`, a Server-Sent Events reader (the admin event stream).

Nothing else in tests/ is imported by bench/, fixtures stay in conftest files and import from here, and
this package imports nothing else from tests/ (tests/unit/test_layout.py checks all three).
"""
