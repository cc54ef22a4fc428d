"""The one interface every pool source implements."""

from __future__ import annotations

from typing import Protocol

from infergate.epp.datastore import Datastore


class SourceError(ValueError):
    """Invalid source content; the message names the field path and the reason."""


class PoolSource(Protocol):
    """Feeds a ``Datastore`` and keeps it current until stopped.

    ``run`` fills the datastore, then keeps applying changes (no restart needed) until it is
    cancelled. It must be called on the loop that owns the datastore.
    """

    async def run(self, datastore: Datastore) -> None: ...
