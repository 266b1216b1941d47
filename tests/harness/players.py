"""Play a stream in Chromium with dash.js / hls.js / Shaka Player / video.js / <video> and return what happened.

Runs tests/e2e/play.mjs (playwright-core driving Debian's /usr/bin/chromium); see README.md there
for the report's fields.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The page, its script and the node packages stay with the browser tests; only this driver is shared.
E2E = Path(__file__).resolve().parents[1] / "e2e"
PLAY_MJS = E2E / "play.mjs"
PLAYERS = ("dash", "hls", "shaka", "videojs", "native")
# Launching Chromium and loading the page comes on top of the playback timeout.
_STARTUP_SLACK = 60.0


class HarnessError(RuntimeError):
    """The harness itself could not run: missing tools or a crashed browser."""


def chromium_path() -> str:
    """Return the Chromium the harness drives (CHROMIUM env var, default Debian's)."""
    return os.environ.get("CHROMIUM", "/usr/bin/chromium")


def check_harness() -> None:
    """Raise HarnessError naming what is missing to run a browser test."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node (Debian/nodesource nodejs)")
    if not os.access(chromium_path(), os.X_OK):
        missing.append(f"chromium at {chromium_path()}")
    for pkg in ("playwright-core", "dashjs", "hls.js", "shaka-player", "video.js"):
        if not (E2E / "node_modules" / pkg / "package.json").is_file():
            missing.append(f"tests/e2e/node_modules/{pkg}")
    if missing:
        raise HarnessError(
            "browser harness cannot run, missing: "
            + ", ".join(missing)
            + ". Run scripts/test.sh (it installs them) or see tests/e2e/README.md."
        )


def play(
    player: str,
    src: str,
    *,
    timeout: float,
    until_ended: bool = True,
    min_play: float | None = None,
    page_origin: str | None = None,
    screenshot: Path | None = None,
    opened: Path | None = None,
    error_screenshot: Path | None = None,
) -> dict:
    """Play src with player until it ends (or min_play seconds played) and return the report.

    With `screenshot`, the page is saved there once the picture has moved 1 s past its first frame.
    With `opened`, that file appears when the page first asks the stream's origin for anything.
    With `error_screenshot`, the page is saved there when the play stops on a fatal error.
    """
    if player not in PLAYERS:
        raise ValueError(f"player must be one of {PLAYERS}, not {player!r}")
    check_harness()
    argv = ["node", str(PLAY_MJS), "--player", player, "--src", src, "--timeout", str(timeout)]
    if until_ended:
        argv.append("--until-ended")
    if min_play is not None:
        argv += ["--min-play", str(min_play)]
    if page_origin is not None:
        argv += ["--page-origin", page_origin]
    if screenshot is not None:
        argv += ["--screenshot", str(screenshot)]
    if opened is not None:
        argv += ["--opened", str(opened)]
    if error_screenshot is not None:
        argv += ["--error-screenshot", str(error_screenshot)]
    proc = _run(argv, timeout)
    retried = proc.returncode != 0 and "Page crashed" in proc.stderr
    if retried:
        # Chromium's renderer itself died (seen once in a few dozen runs, never twice in a row):
        # one more try, said in the output and the report; a second crash fails the test.
        print(f"play.mjs: Chromium's page crashed, retrying once:\n{proc.stderr[-2000:]}", file=sys.stderr)
        proc = _run(argv, timeout)
    if proc.returncode != 0:
        raise HarnessError(f"play.mjs exited {proc.returncode}: {argv}\n--- stderr ---\n{proc.stderr[-4000:]}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise HarnessError(f"play.mjs printed no report\n--- stderr ---\n{proc.stderr[-4000:]}")
    report = json.loads(lines[-1])
    report["log"] = proc.stderr[-4000:]
    report["retried_after_page_crash"] = retried
    return report


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHROMIUM": chromium_path()}
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, cwd=E2E, env=env, timeout=timeout + _STARTUP_SLACK, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"play.mjs hung past {timeout + _STARTUP_SLACK}s: {argv}") from e


def long_stalls(report: dict, seconds: float) -> list[dict]:
    """Return the rebuffering stalls longer than seconds (still-open ones count with their time so far).

    The wait before the first frame is not a stall: it depends on how loaded the machine is, so it is
    measured by bench.live_latency, never asserted in a test.
    """
    return [s for s in report["stalls"] if not s["startup"] and (s["duration"] or 0) > seconds]


def summary(report: dict) -> str:
    """Return the report without its long logs, for assertion messages."""
    short = {k: v for k, v in report.items() if k not in ("events", "samples", "log", "playlists", "media")}
    short["first_playlists"] = report.get("playlists", [])[:12]
    return json.dumps(short, indent=1) + "\n--- harness log ---\n" + report.get("log", "")
