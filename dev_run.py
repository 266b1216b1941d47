"""Run the dev stack: migrate, then serve the app (with local job threads when GEARMAN_SERVERS is unset).

python dev_run.py [--host 127.0.0.1] [--port 5000]
"""

from __future__ import annotations

import argparse

from server import create_app
from server.cli import create_first_admin, db_upgrade, first_admin_banner
from server.config import Config
from server.web.devserver import make_dev_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback unless you mean it)")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    config = Config.from_env()
    db_upgrade(config)
    # The one process of the dev stack, so it may run the jobs itself (gunicorn's processes never do).
    app = create_app(config, local_runner=not config.uses_gearman)
    print(
        f"team03 on http://{args.host}:{args.port}  (database {config.DATABASE_URL.split('@')[-1]}, media {config.MEDIA_ROOT})",
        flush=True,
    )
    password = create_first_admin(config)
    if password is not None:
        print(first_admin_banner(f"http://{args.host}:{args.port}/", "admin", password), flush=True)
    # Threaded so uploads, playlist polls and the dashboard do not wait on each other; never debug.
    server = make_dev_server(app, args.host, args.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.extensions["team03"].close()


if __name__ == "__main__":
    main()
