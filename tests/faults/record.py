"""What the fault suite saw: every request and its answer, every fault with its window, and the verdict on them.

A 503 (with Retry-After) is excused while the database is down, a 507 while the disk is full, each
until GRACE seconds after the fault ended (pools reconnect, the reaper catches up). One more 503 is the
protocol's, not a fault's: `not_ready`, a standard playlist asked for before the video's first segment
is published (server/web/answers.py); it is excused only until that playlist first answered 200.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

GRACE = 5.0
# What each fault excuses: (status, the JSON code the app gives it). nginx's own 503 (gunicorn not
# answering) is excused by no fault but an origin's crash (tests/faults/origins.py): a request that origin
# held when it died; nginx sends every later one to the other origin. The app stays up through the others.
EXCUSES = {
    "mariadb": {(503, "database_unavailable")},
    "disk": {(507, "insufficient_storage")},
    "store": {(503, "storage_unavailable")},
    "kill origin": {(503, "service_unavailable")},
}


@dataclass
class Answer:
    route: str  # the route class: "upload", "end", "playlist", "media", "hostile", ...
    url: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    retry_after: str | None = None
    problem: str = ""  # a parse failure or a torn file
    code: str = ""  # a 5xx answer's JSON "code"


@dataclass
class Fault:
    kind: str
    started: float
    ended: float | None = None
    note: str = ""


@dataclass
class Record:
    """Thread-safe log of answers and faults, on time.monotonic()."""

    answers: list[Answer] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    origin: float = field(default_factory=time.monotonic)  # times in messages and the tally are from here

    def answer(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def begin(self, kind: str, note: str = "") -> Fault:
        fault = Fault(kind, time.monotonic(), note=note)
        with self.lock:
            self.faults.append(fault)
        return fault

    def excused(self, answer: Answer) -> bool:
        """Whether a 5xx answer fell in the window of a fault that excuses its status."""
        if answer.status == 503 and not answer.retry_after:
            return False
        with self.lock:
            faults = list(self.faults)
        for fault in faults:
            ended = (fault.ended if fault.ended is not None else time.monotonic()) + GRACE
            excuses = EXCUSES.get(fault.kind, set())
            if (answer.status, answer.code) in excuses and answer.started <= ended and answer.ended >= fault.started:
                return True
        return False

    def not_ready_yet(self) -> list[Answer]:
        """The 503 `not_ready` answers (with Retry-After) given before their playlist's first 200."""
        with self.lock:
            answers = list(self.answers)
        first_ok: dict[str, float] = {}
        for a in answers:
            if a.status == 200:
                first_ok[a.url] = min(first_ok.get(a.url, a.started), a.started)
        return [
            a
            for a in answers
            if a.status == 503 and a.code == "not_ready" and a.retry_after and a.started < first_ok.get(a.url, float("inf"))
        ]

    def failures(self) -> list[str]:
        """Every answer that breaks the rules: a parse failure, or a 5xx no fault excuses."""
        with self.lock:
            answers = list(self.answers)
        early = {id(a) for a in self.not_ready_yet()}
        bad = [f"{a.route} {a.url}: {a.problem}" for a in answers if a.problem]
        bad += [
            f"{a.route} {a.url}: {a.status} {a.code} at +{a.started - self.origin:.1f}s"
            for a in answers
            if a.status is not None and a.status >= 500 and id(a) not in early and not self.excused(a)
        ]
        return bad

    def tally(self) -> dict[str, object]:
        with self.lock:
            answers, faults = list(self.answers), list(self.faults)
        classes = Counter("none" if a.status is None else f"{a.status // 100}xx" for a in answers)
        return {
            "faults": dict(Counter(f.kind for f in faults)),
            "fault_windows": [
                {
                    "kind": f.kind,
                    "at": round(f.started - self.origin, 1),
                    "seconds": round((f.ended or time.monotonic()) - f.started, 1),
                    "note": f.note,
                }
                for f in faults
            ],
            "requests": dict(Counter(a.route for a in answers)),
            "answers": dict(sorted(classes.items())),
            "no_answer_by_route": dict(Counter(a.route for a in answers if a.status is None)),
            "statuses": {str(k): v for k, v in sorted(Counter(a.status for a in answers if a.status).items())},
            "excused_5xx": sum(1 for a in answers if a.status and a.status >= 500 and self.excused(a)),
            "not_ready_before_first_segment": len(self.not_ready_yet()),
        }
