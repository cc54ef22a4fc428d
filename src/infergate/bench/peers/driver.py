"""Send a workload's sessions to a router: an open loop (sessions start at their planned
times) or a closed loop (a fixed number of users, each running one session after another).

Every turn is a streaming ``/v1/completions`` request (``ignore_eos``, usage in the last
event); the answer's text is kept so the next turn of a chat repeats it. Times are measured
on the wall clock and converted to model time (multiplied by the time scale) when summarized.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from infergate.api import headers
from infergate.bench.loadgen import RequestResult, stream_body
from infergate.bench.peers.workloads import Session, Workload
from infergate.util.tls import default_verify_context


@dataclass
class TurnResult(RequestResult):
    """One turn: the load generator's result (times in wall seconds) and its objective."""

    objective: str | None = None
    group: int = 0  # the session's prefix group
    sent_at: float = 0.0  # wall seconds from the phase's start to this turn's request


async def stream_turn(client: httpx.AsyncClient, url: str, model: str, prompt: str, max_tokens: int,
                      objective: str | None) -> TurnResult:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    extra = {headers.INFERENCE_OBJECTIVE: objective} if objective else None
    return await stream_body(client, url, body, extra, TurnResult(ok=False, objective=objective))


async def _run_session(client: httpx.AsyncClient, url: str, base_model: str, session: Session,
                       time_scale: float, deadline: float | None, phase_start: float) -> list[TurnResult]:
    results: list[TurnResult] = []
    history = ""
    for i, turn in enumerate(session.turns):
        if i and turn.think_s:
            pause = turn.think_s / time_scale
            if deadline is not None:  # a user thinking at the deadline sends nothing more: do not wait it out
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause)
        if deadline is not None and time.monotonic() >= deadline:
            break
        prompt = session.prompt(history, i)
        sent_at = time.monotonic() - phase_start
        result = await stream_turn(client, url, session.model or base_model, prompt, turn.max_tokens,
                                   session.objective)
        result.group, result.sent_at = session.group, sent_at
        results.append(result)
        if not result.ok:
            break
        history = prompt + result.text
        result.text = ""  # the history keeps it; the results need not
    return results


def _client(timeout: float) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=512)
    return httpx.AsyncClient(verify=default_verify_context(), timeout=httpx.Timeout(timeout, connect=10.0),
                             limits=limits)


async def run_open(url: str, model: str, workload: Workload, time_scale: float, *,
                   timeout: float = 600.0) -> tuple[list[TurnResult], float]:
    """Start every session at its planned time (model seconds / time scale)."""
    async with _client(timeout) as client:
        loop = asyncio.get_running_loop()
        start, phase_start = loop.time(), time.monotonic()

        async def one(session: Session) -> list[TurnResult]:
            delay = start + session.at / time_scale - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            return await _run_session(client, url, model, session, time_scale, None, phase_start)

        nested = await asyncio.gather(*(one(s) for s in workload.sessions))
        return [r for rs in nested for r in rs], loop.time() - start


SHED_BACKOFF_S = 1.0  # model seconds a closed-loop user waits after a 429 (a client backing off)


async def run_closed(url: str, model: str, workload: Workload, time_scale: float, duration_s: float, *,
                     timeout: float = 600.0) -> tuple[list[TurnResult], float]:
    """``workload.concurrency`` users take sessions in order until ``duration_s`` wall seconds
    are up; turns in flight then finish (their latencies count; the summary counts rates within
    the ``duration_s`` window, :func:`infergate.bench.peers.summary.summarize`). With objectives (priority-mix) each user
    keeps one objective (user k that of session k, so the mix is the workload's) and takes the
    next session of it, and waits ``SHED_BACKOFF_S`` after a 429: a shed request must not turn
    its user into one more critical user (or a loop of instant retries)."""
    queues: dict[str | None, list[Session]] = {}
    for s in reversed(workload.sessions):
        queues.setdefault(s.objective if workload.objectives else None, []).append(s)
    classes = [s.objective if workload.objectives else None for s in workload.sessions[: workload.concurrency]]
    results: list[TurnResult] = []
    async with _client(timeout) as client:
        loop = asyncio.get_running_loop()
        start, phase_start = loop.time(), time.monotonic()
        deadline = phase_start + duration_s

        async def user(objective: str | None) -> None:
            queue = queues[objective]
            while queue and time.monotonic() < deadline:
                turns = await _run_session(client, url, model, queue.pop(), time_scale, deadline, phase_start)
                results.extend(turns)
                if turns and turns[-1].status == 429:
                    await asyncio.sleep(SHED_BACKOFF_S / time_scale)

        await asyncio.gather(*(user(c) for c in classes))
        return results, loop.time() - start
