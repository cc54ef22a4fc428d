"""A static ``/metrics`` server for many endpoints from ONE process (the EPP-cost benchmark's pool).

    python -m infergate.bench.epp_cost_metrics_server --port 18000 --address 127.20.1.1 ...

Simulator replicas cost too much CPU on a small machine to measure an EPP scraping 256 of
them, and what is measured here is the EPP's side. This server listens on ``port`` at every
given loopback address (one address per "pod") and answers every request on a keep-alive
HTTP/1.1 connection with the same vLLM metrics page (rendered once by the simulator's
renderer, with non-empty histograms: about the size of a real vLLM page's vLLM part); a
request with ``name[]`` parameters gets only those series, as vLLM's prometheus_client
exposition answers it (rendered once per distinct query).
``GET /stats`` answers ``{"requests": N}``. It prints ``ready`` when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infergate.sim.metrics import EngineSnapshot, EngineStats, render_vllm

MODEL = "meta-llama/Llama-3.1-8B-Instruct"

_PROCESS_SERIES = (
    ("python_gc_objects_collected_total", "Objects collected during gc", "counter", '{generation="0"}', 14233.0),
    ("python_gc_objects_uncollectable_total", "Uncollectable objects found during GC", "counter",
     '{generation="0"}', 0.0),
    ("python_gc_collections_total", "Number of times this generation was collected", "counter",
     '{generation="0"}', 1203.0),
    ("python_info", "Python platform information", "gauge",
     '{implementation="CPython",major="3",minor="12",patchlevel="3",version="3.12.3"}', 1.0),
    ("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", "", 4.2e10),
    ("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", "", 6.1e9),
    ("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", "",
     1.7e9),
    ("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", "", 1234.5),
    ("process_open_fds", "Number of open file descriptors.", "gauge", "", 120.0),
    ("process_max_fds", "Maximum number of open file descriptors.", "gauge", "", 1048576.0),
)


def _preamble(names: frozenset[str] | None) -> str:
    """prometheus_client's process and platform series (all, or those in ``names``)."""
    return "".join(f"# HELP {name} {text}\n# TYPE {name} {kind}\n{name}{labels} {value}\n"
                   for name, text, kind, labels, value in _PROCESS_SERIES if names is None or name in names)


def metrics_page(names: frozenset[str] | None = None) -> bytes:
    """A vLLM page with a busy engine's values (running batch, KV use, LoRA lists, filled
    histograms); with ``names``, only those series, as vLLM's /metrics (prometheus_client) answers
    ``name[]``. Nothing waits: this page never changes, and the EPP's flow control (on by default)
    would hold every request forever behind requests that are not its own and never start (3 of
    them at the mean prompt size are over the pick-time pending-prefill limit from ~700-token
    prompts on)."""
    stats = EngineStats(max_model_len=32768, prompt_tokens=12_345_678, generation_tokens=2_345_678,
                        prefix_cache_queries=9_876_543, prefix_cache_hits=4_567_890, preemptions=12)
    for i in range(500):
        for histogram in (stats.ttft, stats.itl, stats.e2e, stats.queue_time, stats.prefill_time, stats.decode_time):
            histogram.observe(0.001 * (i % 97) + 0.0005 * i)
        stats.request_prompt_tokens.observe(100 + 37 * i)
        stats.request_generation_tokens.observe(10 + 3 * i)
    snapshot = EngineSnapshot(model=MODEL, running=24, waiting=0, kv_usage=0.42, used_blocks=4200, num_blocks=10000,
                              block_size=16, max_loras=4, running_loras=("lora-a", "lora-b"), waiting_loras=(),
                              max_num_seqs=256, max_num_batched_tokens=8192)
    return (_preamble(names) + render_vllm(snapshot, stats, names)).encode()


def _response(page: bytes) -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\n"
            b"content-length: " + str(len(page)).encode() + b"\r\n\r\n" + page)


def _requested_names(target: bytes) -> frozenset[str] | None:
    """The ``name[]`` parameters of a request target, or None without any."""
    query = urlsplit(target.decode("latin-1")).query
    names = parse_qs(query).get("name[]")
    return frozenset(names) if names else None


class _Counter:
    requests = 0


class _Http(asyncio.Protocol):
    """Keep-alive HTTP/1.1: one canned response per request head (GETs carry no body)."""

    def __init__(self, responses: dict[bytes, bytes], counter: _Counter) -> None:
        self._responses = responses  # by request target; the whole page under b"/metrics"
        self._counter = counter
        self._buffer = b""
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # uvloop's TCPTransport is not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
            if head.startswith(b"GET /stats "):
                body = json.dumps({"requests": self._counter.requests}).encode()
                self._transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                      + str(len(body)).encode() + b"\r\n\r\n" + body)
                continue
            self._counter.requests += 1
            target = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/metrics"
            response = self._responses.get(target)
            if response is None:  # rendered once per distinct query
                response = self._responses[target] = _response(metrics_page(_requested_names(target)))
            self._transport.write(response)


async def serve(addresses: list[str], port: int) -> None:
    page = metrics_page()
    responses = {b"/metrics": _response(page)}  # shared by every connection
    counter = _Counter()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(responses, counter), host=addresses, port=port, backlog=1024)
    print(f"ready {len(addresses)} endpoints, page {len(page)} bytes", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--address", action="append", required=True, help="repeat: one per endpoint")
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.address, args.port))


if __name__ == "__main__":
    main()
