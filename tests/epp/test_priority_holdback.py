"""Priority holdback (issue 16): with the default profile a sheddable request (priority < 0) is
shed when the endpoint it was picked for already has ``sheddable_max_inflight_per_endpoint``
requests in flight, long before the saturation limits; priority >= 0 is never shed by it, and
upstream v1.0's profile (no pick-time accounting) keeps upstream's behaviour."""

from __future__ import annotations

import time

import click
import pytest

from infergate.cli.epp import command as epp_command
from infergate.epp.build import director_config
from infergate.epp.contract import InferenceRequest, Rejection
from infergate.epp.datastore import Datastore, Objective, PodInfo, PoolInfo
from infergate.epp.director import DirectorConfig, EppDirector
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.options import EPPOptions
from infergate.epp.saturation import (
    PRIORITY_MIX_SHEDDABLE_MAX_INFLIGHT_PER_ENDPOINT,
    SaturationConfig,
    SaturationDetector,
)
from infergate.epp.scheduling import load_preset

IPS = ["10.0.0.1", "10.0.0.2"]
HOSTS = [f"{ip}:8000" for ip in IPS]
SYSTEM = "You are a meticulous assistant who answers in full sentences. " * 30
OTHER = "You translate every message into French, keeping its tone and its formatting. " * 25


def make(preset: str = "default", saturation: SaturationConfig | None = None) -> tuple[EppDirector, MetricsStore]:
    ds = Datastore()
    ds.set_pool(PoolInfo("pool", selector={"app": "vllm"}, target_ports=(8000,)))
    ds.replace_pods([PodInfo(f"pod-{i}", ip, {"app": "vllm"}) for i, ip in enumerate(IPS)])
    ds.upsert_objective(Objective("critical", 1))
    ds.upsert_objective(Objective("standard", 0))
    ds.upsert_objective(Objective("sheddable", -1))
    store = MetricsStore()
    config = DirectorConfig(saturation=saturation or SaturationConfig(), seed=1)
    director = EppDirector(ds, load_preset(preset, seed=1), store, config=config)
    idle(store)
    return director, store


def idle(store: MetricsStore) -> None:
    for h in HOSTS:
        store.update(h, EndpointMetrics(update_time=time.monotonic()))


def req(rid: str, objective: str, prompt: str) -> InferenceRequest:
    return InferenceRequest(request_id=rid, headers={}, body={"model": "m", "prompt": prompt}, model="m",
                            objective=objective, prompt=prompt)


# ---- the rule -------------------------------------------------------------------------

def detector(load: tuple[int, float], config: SaturationConfig | None = None,
             accounts_picks: bool = True) -> SaturationDetector:
    store = MetricsStore()
    store.update("a", EndpointMetrics(update_time=1000.0))
    return SaturationDetector(store, config or SaturationConfig(), load=lambda _h, _m: load,
                              accounts_picks=accounts_picks)


ON = SaturationConfig(sheddable_max_inflight_per_endpoint=PRIORITY_MIX_SHEDDABLE_MAX_INFLIGHT_PER_ENDPOINT)


def test_sheddable_is_held_back_at_the_limit_and_other_priorities_never() -> None:
    limit = PRIORITY_MIX_SHEDDABLE_MAX_INFLIGHT_PER_ENDPOINT
    assert limit > 0
    below, at = detector((limit - 1, 0.0), ON), detector((limit, 0.0), ON)
    assert below.shed_reason(-1, "a", 1000.0) is None
    reason = at.shed_reason(-1, "a", 1000.0)
    assert reason is not None and "priority holdback" in reason
    assert at.endpoint_headroom("a", 1000.0) > 0  # far from saturated: the holdback alone sheds
    for priority in (0, 1, 100):
        assert at.shed_reason(priority, "a", 1000.0) is None
        assert detector((10_000, 1e9)).shed_reason(priority, "a", 1000.0) is None  # not even when full


def test_holdback_needs_the_pool_loaded_on_average_too() -> None:
    store = MetricsStore()
    for h in ("a", "b", "c"):
        store.update(h, EndpointMetrics(update_time=1000.0))
    loads = {"a": 3, "b": 0, "c": 2}
    det = SaturationDetector(store, SaturationConfig(sheddable_max_inflight_per_endpoint=3),
                             load=lambda h, _m: (loads[h], 0.0), accounts_picks=True)
    assert det.shed_reason(-1, "a", 1000.0) is not None  # no pool given: the endpoint alone
    assert det.shed_reason(-1, "a", 1000.0, ["a", "b", "c"]) is None  # 5 / 3 per endpoint < 3
    loads["b"] = 4
    assert det.shed_reason(-1, "a", 1000.0, ["a", "b", "c"]) is not None  # 9 / 3 = 3
    assert det.shed_reason(-1, "c", 1000.0, ["a", "b", "c"]) is None  # the picked endpoint has room


def test_holdback_knob_off_unless_set() -> None:
    """It counts requests, so no default suits every pool: unset is off, even in the default
    profile (a replica that meets its objective with 60 requests in flight would shed almost
    every sheddable request at 3)."""
    unset = detector((5, 0.0))
    assert unset.limits.sheddable_max_inflight_per_endpoint == 0
    assert unset.config.sheddable_max_inflight_per_endpoint is None
    assert unset.shed_reason(-1, "a", 1000.0) is None
    # set, it applies in any profile: without an inflight-load-producer the count is this EPP's
    # requests in flight and the scrape's running + waiting
    explicit = detector((5, 0.0), ON, accounts_picks=False)
    assert explicit.limits.sheddable_max_inflight_per_endpoint == PRIORITY_MIX_SHEDDABLE_MAX_INFLIGHT_PER_ENDPOINT
    assert explicit.shed_reason(-1, "a", 1000.0) is not None
    off = detector((5, 0.0), SaturationConfig(sheddable_max_inflight_per_endpoint=0))
    assert off.shed_reason(-1, "a", 1000.0) is None
    six = detector((5, 0.0), SaturationConfig(sheddable_max_inflight_per_endpoint=6))
    assert six.shed_reason(-1, "a", 1000.0) is None
    assert detector((6, 0.0), SaturationConfig(sheddable_max_inflight_per_endpoint=6)).shed_reason(
        -1, "a", 1000.0) is not None


def test_the_saturation_limits_still_shed_first() -> None:
    full = detector((1, 5000.0), SaturationConfig(max_pending_prefill_tokens=1000))
    assert full.shed_reason(-1, "a", 1000.0) == "system saturated, sheddable request dropped"


# ---- the director ---------------------------------------------------------------------

async def test_director_holds_sheddable_back_from_a_busy_endpoint_of_a_loaded_pool() -> None:
    director, store = make(saturation=ON)
    n = PRIORITY_MIX_SHEDDABLE_MAX_INFLIGHT_PER_ENDPOINT
    first = [await director.handle_request(req(f"c{i}", "critical", SYSTEM + f"Question {i}")) for i in range(n)]
    holder = first[0].endpoint
    assert {d.endpoint for d in first} == {holder}  # the prefix keeps them together
    idle(store)
    # a lightly loaded pool (fewer than n per endpoint on average) takes it where affinity sends it
    assert (await director.handle_request(req("s-light", "sheddable", SYSTEM + "Question L"))).endpoint == holder
    other = [await director.handle_request(req(f"o{i}", "critical", OTHER + f"Question {i}")) for i in range(n)]
    assert {d.endpoint for d in other} == set(HOSTS) - {holder}
    idle(store)
    assert not director.saturation.is_saturated(HOSTS)
    with pytest.raises(Rejection) as err:
        await director.handle_request(req("s", "sheddable", SYSTEM + "Question S"))
    assert (err.value.status, err.value.code) == (429, "InferencePoolResourceExhausted")
    assert err.value.message == (f"sheddable request held back: its endpoint has {n + 1} requests in flight "
                                 f"(priority holdback at {n})")
    # priority >= 0 is never held back
    assert (await director.handle_request(req("std", "standard", SYSTEM + "Question T"))).endpoint == holder
    assert (await director.handle_request(req("crit", "critical", SYSTEM + "Question U"))).endpoint == holder
    # a sheddable request whose pick is an idle endpoint goes there
    for i in range(n):
        director.on_request_done(f"o{i}", completed=True)
    assert (await director.handle_request(req("s-idle", "sheddable", "an unrelated prompt"))).endpoint != holder
    for rid in [f"c{i}" for i in range(n)] + ["std", "crit"]:
        director.on_request_done(rid, completed=True)
    assert (await director.handle_request(req("s-ok", "sheddable", SYSTEM + "Question S"))).endpoint == holder


async def test_upstream_v1_profile_has_no_holdback() -> None:
    director, store = make("upstream-v1.0")
    for i in range(8):
        await director.handle_request(req(f"c{i}", "critical", SYSTEM + f"Question {i}"))
    idle(store)
    assert director.saturation.limits.sheddable_max_inflight_per_endpoint == 0
    assert (await director.handle_request(req("s", "sheddable", SYSTEM + "Question S"))).endpoint in HOSTS


async def test_holdback_off_admits_sheddable_until_saturation() -> None:
    for saturation in (SaturationConfig(sheddable_max_inflight_per_endpoint=0), None):  # 0, and unset
        director, store = make(saturation=saturation)
        for i in range(8):
            await director.handle_request(req(f"c{i}", "critical", SYSTEM + f"Question {i}"))
        idle(store)
        assert (await director.handle_request(req("s", "sheddable", SYSTEM + "Question S"))).endpoint in HOSTS


# ---- the knob: options, flag ----------------------------------------------------------

def test_options_and_flag_set_the_holdback() -> None:
    assert director_config(EPPOptions(pool_name="p"), accounts_picks=True).saturation.sheddable_max_inflight_per_endpoint is None
    options = EPPOptions(pool_name="p", sd_sheddable_max_inflight_per_endpoint=5)
    assert director_config(options, accounts_picks=True).saturation.sheddable_max_inflight_per_endpoint == 5
    ctx = epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-max-inflight-per-endpoint", "0"])
    assert EPPOptions.from_cli(ctx.params).sd_sheddable_max_inflight_per_endpoint == 0
    ctx = epp_command.make_context("epp", ["--pool-name", "p"])
    assert EPPOptions.from_cli(ctx.params).sd_sheddable_max_inflight_per_endpoint is None
    with pytest.raises(click.BadParameter):
        epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-max-inflight-per-endpoint", "-1"])
