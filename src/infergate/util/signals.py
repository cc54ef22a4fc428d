"""Waiting for the process's stop signals inside an asyncio program."""

from __future__ import annotations

import asyncio
import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_until_signal(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> signal.Signals:
    """Wait until one of ``signals`` (default SIGTERM, SIGINT) arrives and return it.

    The handlers are installed on the running loop for the wait only; graceful shutdown is the
    caller's (typically in a ``finally``).
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
