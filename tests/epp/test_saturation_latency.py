"""Latency holdback (issue 16): a sheddable request (priority < 0) is shed while the pool's recent
mean time to first token or inter-token latency (the model servers' histograms' ``_sum``/``_count``
deltas over ``LATENCY_WINDOW_S``) is over ``LATENCY_ENTER`` x its objective, until both are under
``LATENCY_EXIT`` x; priority >= 0 is never shed by it; off unless an objective is set, and then the
scrape asks no extra series."""

from __future__ import annotations

import time

import pytest

from infergate.cli.epp import command as epp_command
from infergate.epp.build import director_config, model_server_protocol
from infergate.epp.contract import InferenceRequest, Rejection
from infergate.epp.datastore import Datastore, Objective, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.latency_window import LatencyWindow
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore, parse_metrics
from infergate.epp.model_server_protocol import SGLANG, VLLM
from infergate.epp.options import EPPOptions
from infergate.epp.saturation import (
    LATENCY_ENTER,
    LATENCY_EXIT,
    LATENCY_WINDOW_S,
    SaturationConfig,
    SaturationDetector,
)
from infergate.epp.scheduling import load_preset

OBJECTIVES = SaturationConfig(sheddable_ttft_objective=0.5, sheddable_itl_objective=0.05)


def metrics(t: float, ttft: tuple[float, float] | None = (0.0, 0.0), itl: tuple[float, float] = (0.0, 0.0),
            ) -> EndpointMetrics:
    """A scrape at ``t`` with cumulative (sum, count) histograms (``ttft=None``: no such series)."""
    if ttft is None:
        return EndpointMetrics(update_time=t)
    return EndpointMetrics(update_time=t, ttft_sum=ttft[0], ttft_count=ttft[1], itl_sum=itl[0], itl_count=itl[1])


# ---- the window ---------------------------------------------------------------------------

def test_window_mean_is_the_delta_over_the_last_window() -> None:
    w = LatencyWindow(1.0)
    w.observe("a", metrics(0.0, (10.0, 100)))       # history before the window: the baseline only
    w.observe("a", metrics(0.5, (12.0, 110)))
    w.observe("a", metrics(1.0, (13.0, 112), (1.0, 50)))
    w.observe("a", metrics(1.6, (14.0, 114), (2.0, 60)))
    mean = w.mean(["a"], 1.6)
    # baseline: the newest sample at or before 0.6 (t=0.5)
    assert mean.ttft == pytest.approx((14.0 - 12.0) / (114 - 110))
    assert mean.ttft_requests == 4
    assert mean.itl == pytest.approx(2.0 / 60)


def test_window_pools_endpoints_by_request_and_skips_unknown_or_stale_ones() -> None:
    w = LatencyWindow(1.0)
    for h, (s, c) in {"a": (1.0, 10), "b": (3.0, 2)}.items():
        w.observe(h, metrics(0.0))
        w.observe(h, metrics(0.5, (s, c)))
    w.observe("c", metrics(0.5, None))  # a page without the histograms: unknown, never zero
    assert w.mean(["a", "b", "c"], 0.6).ttft == pytest.approx(4.0 / 12)
    assert w.mean(["c"], 0.6).ttft is None
    assert w.mean(["a"], 0.5 + LATENCY_WINDOW_S + 0.1).ttft is None  # its last scrape is older than the window
    assert w.mean(["nobody"], 0.6) == w.mean([], 0.6)


def test_window_restarts_when_a_counter_goes_down() -> None:
    w = LatencyWindow(1.0)
    w.observe("a", metrics(0.0, (100.0, 100)))
    w.observe("a", metrics(0.2, (101.0, 101)))
    w.observe("a", metrics(0.4, (0.5, 1)))  # the server restarted
    assert w.mean(["a"], 0.4).ttft is None  # one sample: no delta yet (not -100 s / -100)
    w.observe("a", metrics(0.6, (0.9, 2)))
    assert w.mean(["a"], 0.6).ttft == pytest.approx(0.4)
    with pytest.raises(ValueError):
        LatencyWindow(0)


# ---- the rule ---------------------------------------------------------------------------------

def pool(config: SaturationConfig = OBJECTIVES) -> tuple[SaturationDetector, MetricsStore]:
    store = MetricsStore()
    det = SaturationDetector(store, config, load=lambda _h, _m: (0, 0.0), accounts_picks=True)
    for h in ("a", "b"):
        store.update(h, metrics(0.0))
    return det, store


def scrape(store: MetricsStore, t: float, mean_ttft: float, mean_itl: float = 0.01, n: int = 10) -> None:
    """Both endpoints report ``n`` more requests with these means since their last scrape at ``t`` - 0.5."""
    for h in ("a", "b"):
        last = store.raw(h)
        assert last is not None and last.ttft_sum is not None and last.ttft_count is not None
        assert last.itl_sum is not None and last.itl_count is not None
        store.update(h, metrics(t, (last.ttft_sum + n * mean_ttft, last.ttft_count + n),
                                (last.itl_sum + 10 * n * mean_itl, last.itl_count + 10 * n)))


def test_a_pool_meeting_its_latency_sheds_nothing() -> None:
    det, store = pool()
    t = 0.0
    for _ in range(20):  # 10 s of scrapes just under the threshold
        t += 0.5
        scrape(store, t, mean_ttft=0.99 * LATENCY_ENTER * 0.5, mean_itl=0.99 * LATENCY_ENTER * 0.05)
        assert det.shed_reason(-1, "a", t, ["a", "b"]) is None


@pytest.mark.parametrize("signal", ["ttft", "itl"])
def test_sheddable_is_shed_over_the_threshold_until_under_the_exit_and_other_priorities_never(signal: str) -> None:
    det, store = pool()
    slow = {"mean_ttft": 0.2, "mean_itl": 0.01}
    slow["mean_" + signal] = 1.01 * LATENCY_ENTER * (0.5 if signal == "ttft" else 0.05)
    scrape(store, 0.5, **slow)
    reason = det.shed_reason(-1, "a", 0.5, ["a", "b"])
    assert reason is not None and reason.startswith("sheddable request held back: the pool's mean ")
    assert ("time to first token" if signal == "ttft" else "inter-token latency") in reason
    for priority in (0, 1):
        assert det.shed_reason(priority, "a", 0.5, ["a", "b"]) is None
    # hysteresis: between the exit and the enter fractions it goes on shedding ...
    middle = {"mean_ttft": 0.1, "mean_itl": 0.005}
    middle["mean_" + signal] = (LATENCY_ENTER + LATENCY_EXIT) / 2 * (0.5 if signal == "ttft" else 0.05)
    scrape(store, 1.0, **middle)
    scrape(store, 1.5, **middle)  # the window (1 s) now holds only these
    assert det.shed_reason(-1, "a", 1.5, ["a", "b"]) is not None
    # ... and stops once both are under the exit fraction; then the enter fraction applies again
    scrape(store, 2.0, mean_ttft=0.9 * LATENCY_EXIT * 0.5, mean_itl=0.9 * LATENCY_EXIT * 0.05)
    scrape(store, 2.5, mean_ttft=0.9 * LATENCY_EXIT * 0.5, mean_itl=0.9 * LATENCY_EXIT * 0.05)
    assert det.shed_reason(-1, "a", 2.5, ["a", "b"]) is None
    scrape(store, 3.0, **middle)
    scrape(store, 3.5, **middle)
    assert det.shed_reason(-1, "a", 3.5, ["a", "b"]) is None


def test_off_unless_an_objective_is_set() -> None:
    for config in (SaturationConfig(), SaturationConfig(sheddable_ttft_objective=0, sheddable_itl_objective=0)):
        det, store = pool(config)
        assert not config.latency_holdback
        scrape(store, 0.5, mean_ttft=10.0, mean_itl=1.0)
        assert det.shed_reason(-1, "a", 0.5, ["a", "b"]) is None
    only_itl = SaturationConfig(sheddable_itl_objective=0.05)
    det, store = pool(only_itl)
    scrape(store, 0.5, mean_ttft=10.0, mean_itl=0.01)  # TTFT has no objective: not checked
    assert det.shed_reason(-1, "a", 0.5, ["a", "b"]) is None


def test_without_histograms_nothing_is_shed() -> None:
    store = MetricsStore()
    det = SaturationDetector(store, OBJECTIVES, load=lambda _h, _m: (0, 0.0), accounts_picks=True)
    for t in (0.0, 0.5, 1.0):
        store.update("a", EndpointMetrics(update_time=t))  # e.g. an SGLang or Triton server
    assert det.shed_reason(-1, "a", 1.0, ["a"]) is None


# ---- the scrape -------------------------------------------------------------------------------

PAGE = """# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 2.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_count{model_name="m"} 4.0
vllm:time_to_first_token_seconds_sum{model_name="m"} 1.5
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_count{model_name="m"} 40.0
vllm:time_per_output_token_seconds_sum{model_name="m"} 0.8
"""


def test_the_scrape_reads_the_histograms_only_when_asked() -> None:
    # the default scrape reads only the TTFT count (the pick-time accounting's prefill ends: one line)
    assert [n for n in VLLM.metric_names() if "seconds" in n] == ["vllm:time_to_first_token_seconds_count"]
    latency = VLLM.with_latency()
    assert set(latency.metric_names()) - set(VLLM.metric_names()) == {
        "vllm:time_to_first_token_seconds_sum",
        "vllm:inter_token_latency_seconds_sum", "vllm:inter_token_latency_seconds_count",
        "vllm:time_per_output_token_seconds_sum", "vllm:time_per_output_token_seconds_count"}
    m = parse_metrics(PAGE, latency, now=1.0)
    # older vLLM: time_per_output_token_seconds is the inter-token latency
    assert (m.waiting_queue, m.ttft_sum, m.ttft_count, m.itl_sum, m.itl_count) == (2, 1.5, 4.0, 0.8, 40.0)
    plain = parse_metrics(PAGE, VLLM, now=1.0)
    assert (plain.ttft_sum, plain.ttft_count, plain.itl_count) == (None, 4.0, None)
    # a page without them keeps the previous values (as every signal)
    again = parse_metrics("vllm:num_requests_waiting 1\n", latency, now=2.0, previous=m)
    assert (again.waiting_queue, again.ttft_count, again.itl_sum) == (1, 4.0, 0.8)
    assert SGLANG.with_latency() == SGLANG  # no histogram names known there: no signal, no extra series


def test_options_flags_and_wiring() -> None:
    assert EPPOptions(pool_name="p").sd_sheddable_ttft_objective is None
    assert not director_config(EPPOptions(pool_name="p"), accounts_picks=True).saturation.latency_holdback
    assert model_server_protocol(EPPOptions(pool_name="p")).metric_names() == VLLM.metric_names()
    ctx = epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-ttft-objective", "500ms",
                                           "--sd-sheddable-itl-objective", "0.05"])
    options = EPPOptions.from_cli(ctx.params)
    assert (options.sd_sheddable_ttft_objective, options.sd_sheddable_itl_objective) == (0.5, 0.05)
    saturation = director_config(options, accounts_picks=True).saturation
    assert (saturation.sheddable_ttft_objective, saturation.sheddable_itl_objective) == (0.5, 0.05)
    assert "vllm:time_to_first_token_seconds_sum" in model_server_protocol(options).metric_names()
    # the count holdback's flag is untouched
    ctx = epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-max-inflight-per-endpoint", "3"])
    assert director_config(EPPOptions.from_cli(ctx.params), accounts_picks=True).saturation.sheddable_max_inflight_per_endpoint == 3


# ---- the director ----------------------------------------------------------------------------

IPS = ["10.0.0.1", "10.0.0.2"]
HOSTS = [f"{ip}:8000" for ip in IPS]


def req(rid: str, objective: str) -> InferenceRequest:
    prompt = f"A question {rid} " * 20
    return InferenceRequest(request_id=rid, headers={}, body={"model": "m", "prompt": prompt}, model="m",
                            objective=objective, prompt=prompt)


async def test_director_sheds_sheddable_requests_while_the_pool_is_slow() -> None:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(IPS)])
    ds.upsert_objective(Objective("critical", 1))
    ds.upsert_objective(Objective("sheddable", -1))
    store = MetricsStore()
    director = EppDirector(ds, load_preset("default", seed=1), store,
                           config=DirectorConfig(saturation=OBJECTIVES, seed=1))

    def report(ttft_sum: float, n: int) -> None:  # cumulative, as the servers' histograms
        now = time.monotonic()
        for h in HOSTS:
            store.update(h, metrics(now, (ttft_sum, n), (n * 0.01, n)))

    report(0.0, 0)
    report(2.0, 10)  # 10 requests at 0.2 s: sheddable requests are served
    assert (await director.handle_request(req("s1", "sheddable"))).endpoint in HOSTS
    report(2.0 + 26.0, 30)  # 20 more at 1.3 s: the window's mean is 28 s / 30 = 0.933 s > 0.7 x 0.5 s
    with pytest.raises(Rejection) as err:
        await director.handle_request(req("s2", "sheddable"))
    assert (err.value.status, err.value.code) == (429, "InferencePoolResourceExhausted")
    assert "time to first token over the last 1 s is 933 ms (objective 500 ms" in err.value.message
    assert (await director.handle_request(req("c1", "critical"))).endpoint in HOSTS  # never shed by it
