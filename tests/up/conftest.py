"""Helpers for `infergate up` / `infergate demo` tests: private loopback networks, process checks."""

from __future__ import annotations

import os
import random
from pathlib import Path

from infergate.util.net import random_loopback_block


def private_cidr(port: int) -> str:
    """A /24 inside 127.0.0.0/8 where ``port`` is free on the first addresses (tests run concurrently)."""
    first = random_loopback_block(8, port, rng=random.Random())[0]
    return first.rsplit(".", 1)[0] + ".0/24"


def processes_mentioning(*needles: str) -> list[tuple[int, str]]:
    """Live processes whose command line or environment contains any of ``needles`` (from /proc).

    Pods of the local runtime carry ``POD_IP=<their address>`` in their environment, so a pod
    CIDR prefix finds every pod process of a test, whatever its arguments.
    """
    found: list[tuple[int, str]] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            environ = (entry / "environ").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(n in cmdline or n in environ for n in needles):
            found.append((int(entry.name), cmdline))
    return found
