"""A steady streamed-completions load with the official ``openai`` client, as a user's
application sends it: ``AsyncOpenAI`` with ``max_retries=0`` (a retry would hide a failed
request), one ``completions.create(stream=True)`` per request, read to the end."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import openai

from infergate.api.headers import INFERENCE_OBJECTIVE

from .streamload import paced


@dataclass(frozen=True)
class Outcome:
    started: float  # monotonic
    model: str  # the model asked for
    status: int  # 200, the HTTP status of an error answer, or 0 (connection error / empty stream)
    answered_by: str = ""  # the model the stream's chunks name (the preview pool's canary rewrites food-review)
    error: str = ""  # the error answer's body (or the exception), for the assertion message


@dataclass
class OpenAIStreamLoad:
    """``rate`` streamed completions per second to ``base_url`` (``.../v1``), alternating
    ``models``, from a thread, until stopped."""

    base_url: str
    models: tuple[str, ...]
    prompt: str
    rate: float = 50.0
    max_tokens: int = 8
    timeout_s: float = 30.0
    objectives: Mapping[str, str] = field(default_factory=dict)  # model -> x-gateway-inference-objective
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    async def one(self, client: openai.AsyncOpenAI, model: str) -> None:
        started = time.monotonic()
        try:
            headers = {INFERENCE_OBJECTIVE: self.objectives[model]} if model in self.objectives else None
            stream = await client.completions.create(model=model, prompt=self.prompt, max_tokens=self.max_tokens,
                                                     stream=True, extra_headers=headers)
            names = [chunk.model async for chunk in stream]
        except openai.APIStatusError as exc:
            self.outcomes.append(Outcome(started, model, exc.status_code, error=exc.response.text[:300]))
            return
        except openai.APIError as exc:  # connection error, timeout, a stream cut short
            self.outcomes.append(Outcome(started, model, 0, error=repr(exc)[:300]))
            return
        if not names:
            self.outcomes.append(Outcome(started, model, 0, error="a stream without a completion chunk"))
            return
        self.outcomes.append(Outcome(started, model, 200, answered_by=names[0]))

    async def run(self) -> None:
        async with openai.AsyncOpenAI(base_url=self.base_url, api_key="unused", max_retries=0,
                                      timeout=self.timeout_s) as client:
            await paced(self.rate, self._stop, lambda i: self.one(client, self.models[i % len(self.models)]))

    @contextlib.contextmanager
    def in_thread(self, join_s: float = 60.0) -> Iterator[OpenAIStreamLoad]:
        """Run in a thread for the block; stop and join (bounded) at exit."""
        thread = threading.Thread(target=lambda: asyncio.run(self.run()), name="openai-load")
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(join_s)

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def achieved_rate(self) -> float:
        starts = [o.started for o in self.outcomes]
        return len(starts) / (max(starts) - min(starts)) if len(starts) > 1 else 0.0

    def answered_by(self, since: float = 0.0) -> Counter[str]:
        return Counter(o.answered_by for o in self.outcomes if o.status == 200 and o.started >= since)
