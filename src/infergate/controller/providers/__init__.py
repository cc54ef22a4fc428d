"""Where resources come from: a directory of manifests, or the Kubernetes API.

A provider keeps an up-to-date view of the resources, signals changes, hands out immutable
``Snapshot``s and stores the statuses the translator computed.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from infergate.controller.snapshot import Snapshot
from infergate.controller.translator.options import TranslationResult


class Provider(Protocol):
    changed: asyncio.Event  # set whenever the resources changed since the last snapshot()

    async def start(self) -> None: ...

    def snapshot(self) -> Snapshot:
        """The current resources (clears ``changed``)."""
        ...

    async def write_statuses(self, result: TranslationResult, controller_name: str) -> int:
        """Store the statuses of ``result`` (merged with what is stored); returns how many changed."""
        ...

    async def stop(self) -> None: ...
