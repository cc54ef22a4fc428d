"""The peer benchmark's closed loop with objectives (priority-mix): a shed request does not turn
its user into one more critical user, and a shed user backs off instead of retrying at once."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from tests.support.aiohttp_server import served

from infergate.api import headers
from infergate.bench.peers import driver
from infergate.bench.peers.workloads import CRITICAL, SHEDDABLE, Session, Turn, Workload


class Server:
    """Answers critical requests with a short stream (after ``delay`` s) and sheds the others."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.critical_now = 0
        self.critical_max = 0
        self.shed = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get(headers.INFERENCE_OBJECTIVE) != CRITICAL:
            self.shed += 1
            return web.Response(status=429, text="system saturated, sheddable request dropped")
        self.critical_now += 1
        self.critical_max = max(self.critical_max, self.critical_now)
        try:
            response = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await response.prepare(request)
            for _ in range(2):
                await asyncio.sleep(self.delay / 2)
                await response.write(b"data: " + json.dumps({"choices": [{"text": "x"}]}).encode() + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
            return response
        finally:
            self.critical_now -= 1


async def test_closed_loop_users_keep_their_objective_and_back_off_after_a_shed() -> None:
    server = Server(delay=0.05)
    app = web.Application()
    app.router.add_post("/v1/completions", server.handle)
    async with served(app) as url:
        objectives = [CRITICAL, SHEDDABLE] * 200
        sessions = tuple(Session(0.0, "", (Turn("q", 2),), objective=o) for o in objectives)
        workload = Workload("priority-mix", "test", sessions, concurrency=4,
                            objectives=((CRITICAL, 1), (SHEDDABLE, -1)))
        time_scale = 10.0  # the 1 s (model time) back-off is 0.1 s of wall time
        results, _wall = await driver.run_closed(f"{url}/v1/completions", "m", workload, time_scale, 1.0)
    # two critical users (sessions 0 and 2), two sheddable ones: before, a shed user took the next
    # session, critical half the time, so all four users soon sent critical requests
    assert server.critical_max == 2
    # two sheddable users, one 429 then a 0.1 s back-off each: about 10 each in 1 s, not hundreds
    assert 4 <= server.shed <= 30
    # the critical users kept working: ~20 requests each in 1 s on an idle machine; 8 each leaves room
    # for a starved one (a suite run saw 12 in all in a 0.6 s phase)
    assert sum(1 for r in results if r.ok) >= 2 * 8
    # each turn says when it was sent, from the phase's start: the summary's warm-up cut reads it
    sent = sorted(r.sent_at for r in results)
    assert sent[0] < 0.3 and 0.5 < sent[-1] < 1.3, (sent[0], sent[-1])  # seconds from the phase's start


async def test_a_user_thinking_at_the_deadline_does_not_hold_the_phase_open() -> None:
    """Each session's second turn comes after 50 model seconds of thought (5 s of wall time): the
    phase ends at its 0.3 s deadline plus the turns in flight, not when the thinking would end,
    and the second turns are never sent."""
    server = Server(delay=0.02)
    app = web.Application()
    app.router.add_post("/v1/completions", server.handle)
    async with served(app) as url:
        sessions = tuple(Session(0.0, "", (Turn("q", 2), Turn(" again", 2, think_s=50.0)), objective=CRITICAL)
                         for _ in range(8))
        workload = Workload("multi-turn", "test", sessions, concurrency=2)
        results, wall = await driver.run_closed(f"{url}/v1/completions", "m", workload, 10.0, 0.3)
    assert wall < 2.0, wall  # before: 5 s, each user waited out its thought
    assert len(results) == 2 and all(r.ok for r in results)  # one first turn per user, no second turn
