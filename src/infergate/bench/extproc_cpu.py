"""CPU per request of the EPP's ext_proc path, measured on a real `infergate epp` process.

    python -m infergate.bench.extproc_cpu [--requests 2000] [--concurrency 16]

A gRPC client plays Envoy (real protobuf messages, one stream per request) against an
`infergate epp` subprocess whose pool is 4 simulator replicas (so scheduling sees real
metrics). For each processing mode the EPP process's CPU time (``/proc/<pid>/stat``) is
read before and after the requests; the EPP's idle CPU over the same wall time (metric
scrapes) is measured separately and subtracted.

Modes:
* ``buffered``: infergate's recommended Envoy config: request body BUFFERED, response
  headers SEND, response body NONE (3 messages in, 3 out per request);
* ``streamed``: the same with response body STREAMED (the EPP sees the response chunks,
  e.g. for token usage, and answers each with an empty reply);
* ``duplex``: upstream's: request and response bodies FULL_DUPLEX_STREAMED, with a
  streamed response of ``--response-chunks`` chunks echoed back.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.api.headers import REQUEST_ID
from infergate.bench.topology import EPPProcess, PortPool, SimReplicas, static_pool_file, workdir
from infergate.util.net import random_loopback_block

MODE = processing_mode_pb2.ProcessingMode
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


def _headers(mode: str, i: int) -> pb.ProcessingRequest:
    config = {
        "buffered": pb.ProtocolConfiguration(request_body_mode=MODE.BUFFERED, response_body_mode=MODE.NONE),
        "streamed": pb.ProtocolConfiguration(request_body_mode=MODE.BUFFERED, response_body_mode=MODE.STREAMED),
        "duplex": pb.ProtocolConfiguration(request_body_mode=MODE.FULL_DUPLEX_STREAMED,
                                           response_body_mode=MODE.FULL_DUPLEX_STREAMED),
    }[mode]
    values = {":method": "POST", ":path": "/v1/completions", ":authority": "gateway", ":scheme": "http",
              "content-type": "application/json", "user-agent": "bench", REQUEST_ID: f"req-{i}",
              "accept": "*/*"}
    return pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(
            headers=[core_pb.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()])),
        protocol_config=config,
    )


async def _one(stub: pb_grpc.ExternalProcessorStub, mode: str, i: int, body: bytes, chunks: int) -> None:
    call = stub.Process()
    await call.write(_headers(mode, i))
    if mode != "duplex":
        await call.read()
        await call.write(pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True)))
        await call.read()
    else:
        await call.write(pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True)))
        await call.read()  # headers response
        await call.read()  # body chunk
    await call.write(pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(headers=[
        core_pb.HeaderValue(key=":status", raw_value=b"200"),
        core_pb.HeaderValue(key="content-type", raw_value=b"text/event-stream")]))))
    await call.read()
    if mode != "buffered":
        for c in range(chunks):
            last = c == chunks - 1
            data = b'data: {"choices":[{"text":" tok"}]}\n\n' + (b"data: [DONE]\n\n" if last else b"")
            await call.write(pb.ProcessingRequest(response_body=pb.HttpBody(body=data, end_of_stream=last)))
            await call.read()
    await call.done_writing()
    await call.code()


async def _drive(port: int, mode: str, requests: int, concurrency: int, chunks: int) -> float:
    body = json.dumps({"model": MODEL, "prompt": "You are a helpful assistant. " * 40 + "Question?",
                       "max_tokens": 64, "stream": True}).encode()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalProcessorStub(channel)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(i)

        async def worker() -> None:
            while not queue.empty():
                await _one(stub, mode, queue.get_nowait(), body, chunks)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.monotonic() - started


async def measure(requests: int, concurrency: int, chunks: int) -> dict[str, dict[str, float]]:
    work = workdir("infergate-extproc-cpu-")
    ports = PortPool()
    sim_port = ports()
    addresses = random_loopback_block(4, sim_port)
    sims = SimReplicas(addresses, sim_port, time_scale=1.0, model=MODEL, workdir=work)
    pool = static_pool_file(work / "pool.yaml", pool_name="pool", endpoints=[f"{a}:{sim_port}" for a in addresses])
    epp = EPPProcess(pool_file=pool, workdir=work, ports=ports)
    hz = os.sysconf("SC_CLK_TCK")
    results: dict[str, dict[str, float]] = {}
    await sims.start()
    try:
        await epp.start()
        assert epp.process.process is not None
        pid = epp.process.process.pid
        await asyncio.sleep(1.0)
        await _drive(epp.grpc_port, "buffered", 200, concurrency, chunks)  # warm up
        idle_start, idle_t0 = _ticks(pid), time.monotonic()
        await asyncio.sleep(3.0)
        idle_per_s = (_ticks(pid) - idle_start) / hz / (time.monotonic() - idle_t0)
        for mode in ("buffered", "streamed", "duplex"):
            before = _ticks(pid)
            wall = await _drive(epp.grpc_port, mode, requests, concurrency, chunks)
            cpu = (_ticks(pid) - before) / hz
            net = max(0.0, cpu - idle_per_s * wall)
            results[mode] = {"requests": requests, "wall_s": wall, "requests_per_s": requests / wall,
                             "cpu_ms_per_request": 1000 * cpu / requests,
                             "cpu_ms_per_request_net_of_idle": 1000 * net / requests,
                             "idle_cores": idle_per_s}
    finally:
        await epp.stop()
        await sims.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--response-chunks", type=int, default=16)
    parser.add_argument("--out", type=Path, default=None, help="Write the JSON result to this file too.")
    args = parser.parse_args()
    import uvloop

    results = uvloop.run(measure(args.requests, args.concurrency, args.response_chunks))
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
