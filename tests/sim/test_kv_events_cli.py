"""``infergate sim --kv-events-*`` as a subprocess: events reach a subscriber; bad endpoints are refused."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import pytest

from infergate.kvevents import EndpointBlockIndex, KvEventSubscriber
from infergate.sim import tokenizer
from infergate.util.net import free_port, random_loopback_block
from infergate.util.wait import async_wait_until

pytestmark = pytest.mark.e2e

PROMPT = "A prompt long enough for a few blocks of sixteen simulated tokens each. " * 4


async def test_cli_publishes_kv_events_in_the_array_form() -> None:
    port, events_port, replay_port = free_port(), free_port(), free_port()
    address = random_loopback_block(1, port)[0]
    proc = subprocess.Popen(
        [sys.executable, "-m", "infergate", "sim", "--address", address, "--port", str(port), "--model", "m",
         "--time-scale", "20", "--kv-events-endpoint", f"tcp://*:{events_port}",
         "--kv-events-replay-endpoint", f"tcp://*:{replay_port}", "--kv-events-encoding", "array"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    index = EndpointBlockIndex()
    sub = KvEventSubscriber(f"tcp://{address}:{events_port}", index,
                            replay_endpoint=f"tcp://{address}:{replay_port}")
    try:
        assert proc.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20.0)
        assert ready.startswith("ready "), proc.stderr.read() if proc.stderr else ""
        sub.start()
        # the subscriber may join after the first batches: later ones show the gap, the replay fills it
        hashes = tokenizer.block_hashes(PROMPT, 16, "m")
        async with httpx.AsyncClient(timeout=30.0) as client:
            for i in range(50):
                (await client.post(f"http://{address}:{port}/v1/completions",
                                   json={"model": "m", "prompt": f"{i} {PROMPT}" if i else PROMPT,
                                         "max_tokens": 1})).raise_for_status()
                if index.reliable and index.match_prefix(hashes) == len(hashes):
                    break
                await asyncio.sleep(0.05)
        await async_wait_until(lambda: index.reliable and index.match_prefix(hashes) == len(hashes), 5.0)
    finally:
        await sub.stop()
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_refuses_a_bad_kv_events_endpoint() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "infergate", "sim", "--kv-events-endpoint", "udp://x"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "kv_events_endpoint: must look like tcp://HOST:PORT" in result.stderr
