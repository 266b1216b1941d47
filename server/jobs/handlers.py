"""The job functions, by name: the same handlers run under gearmand and in the local runner."""

from __future__ import annotations

from functools import partial

from server.jobs import TRANSCODE_SEGMENT
from server.jobs.queue import Handler
from server.pipeline import handle_transcode
from server.services import Services


def handlers_for(services: Services) -> dict[str, Handler]:
    return {TRANSCODE_SEGMENT: partial(handle_transcode, services)}
