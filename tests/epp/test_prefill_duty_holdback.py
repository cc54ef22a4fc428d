"""Prefill holdback over time (issue 16, on by default with pick-time accounting): a sheddable
request (priority < 0) is shed when the endpoint it was picked for had prompt tokens waiting to be
prefilled during more than ``sheddable_max_prefill_busy_fraction`` (0.5) of the recent time, and
the pool's endpoints as much on average. In a closed loop the prefill queue is often empty at the
moment a sheddable request comes (the instant reading, > 512 tokens pending, lets it in) but busy
most of the time; the sheddable requests admitted in those quiet moments fill the batch that
critical requests share. The fraction is a queue's utilization: it means the same on any hardware."""

from __future__ import annotations

import math

import click
import pytest

from infergate.cli.epp import command as epp_command
from infergate.epp.build import director_config
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.options import EPPOptions
from infergate.epp.prefill_duty import PrefillDuty
from infergate.epp.saturation import (
    DEFAULT_SHEDDABLE_MAX_PREFILL_BUSY_FRACTION,
    PREFILL_DUTY_SCRAPES,
    PREFILL_DUTY_TIME_CONSTANT_S,
    SaturationConfig,
    SaturationDetector,
)

POOL = ["a", "b", "c"]
SCRAPE_S = 0.05


class Pool:
    """A detector on a store whose scrapes the test drives; ``pending`` is the pick-time
    accounting's pending prefill per endpoint, changed between scrapes."""

    def __init__(self, config: SaturationConfig | None = None, accounts_picks: bool = True) -> None:
        self.store = MetricsStore()
        self.pending = dict.fromkeys(POOL, 0.0)
        self.now = 0.0
        for h in POOL:
            self.store.update(h, EndpointMetrics(update_time=self.now))
        self.detector = SaturationDetector(self.store, config or SaturationConfig(),
                                           load=lambda h, _m: (1, self.pending[h]), accounts_picks=accounts_picks)

    def run(self, seconds: float, busy: dict[str, float]) -> None:
        """Scrape every endpoint every 50 ms for ``seconds``; endpoint h has a prompt pending
        (1,000 tokens) at ``busy[h]`` of the scrapes (in quarters: the first 0-4 of every 4)."""
        for i in range(round(seconds / SCRAPE_S)):
            self.now += SCRAPE_S
            for h in POOL:
                self.pending[h] = 1000.0 if i % 4 < round(busy.get(h, 0.0) * 4) else 0.0
                self.store.update(h, EndpointMetrics(update_time=self.now))

    def shed(self, priority: int = -1, hostport: str = "a") -> str | None:
        for h in POOL:  # the moment the request comes: nothing is pending (a quiet moment)
            self.pending[h] = 0.0
        return self.detector.shed_reason(priority, hostport, self.now, POOL)


def test_prefill_duty_is_a_time_weighted_mean_of_busy_samples() -> None:
    duty = PrefillDuty(time_constant=1.0)
    assert duty.fraction("a") == 0.0  # never observed
    duty.observe("a", 10.0, False)
    duty.observe("a", 11.0, True)  # a busy second after a quiet start
    assert duty.fraction("a") == pytest.approx(1 - math.exp(-1))
    duty.observe("a", 11.0, False)  # no time elapsed: nothing changes
    duty.observe("a", 10.5, False)  # an older sample: nothing changes
    assert duty.fraction("a") == pytest.approx(1 - math.exp(-1))
    for i in range(1, 200):  # busy half of every 100 ms for 10 s: about half the time
        duty.observe("a", 11.0 + i * 0.05, i % 2 == 0)
    assert 0.4 < duty.fraction("a") < 0.6
    duty.observe("b", 0.0, True)  # the first sample sets it
    assert duty.fraction("b") == 1.0
    with pytest.raises(ValueError, match="time constant"):
        PrefillDuty(time_constant=0)


def test_prefill_duty_keeps_a_bounded_number_of_endpoints() -> None:
    duty = PrefillDuty(max_endpoints=4)
    for i in range(10):
        duty.observe(f"10.0.0.{i}:8000", float(i), True)
        assert len(duty) <= 4
    assert duty.fraction("10.0.0.9:8000") == 1.0  # the newest is kept
    assert duty.fraction("10.0.0.0:8000") == 0.0  # the oldest was forgotten


def test_on_by_default_with_pick_time_accounting_and_off_without() -> None:
    assert DEFAULT_SHEDDABLE_MAX_PREFILL_BUSY_FRACTION == 0.5
    assert SaturationConfig().resolved(True).sheddable_max_prefill_busy_fraction == 0.5
    assert SaturationConfig().resolved(False).sheddable_max_prefill_busy_fraction == 0
    assert SaturationConfig(sheddable_max_prefill_busy_fraction=0).resolved(True).sheddable_max_prefill_busy_fraction == 0


def test_a_pool_busy_prefilling_most_of_the_time_holds_sheddable_requests_back_in_its_quiet_moments() -> None:
    # the closed loop's case: no prompt pending at the moment the request comes (the instant
    # reading admits it), but each endpoint had one pending 75% of the last seconds
    pool = Pool()
    pool.run(3.0, dict.fromkeys(POOL, 0.75))
    reason = pool.shed()
    assert reason is not None and "prefill holdback over 50%" in reason and "of the recent time" in reason
    # the instant reading alone (before this rule) sends it
    before = Pool(SaturationConfig(sheddable_max_prefill_busy_fraction=0))
    before.run(3.0, dict.fromkeys(POOL, 0.75))
    assert before.shed() is None
    # upstream v1.0's profile (no inflight-load-producer): no holdback
    upstream = Pool(accounts_picks=False)
    upstream.run(3.0, dict.fromkeys(POOL, 0.75))
    assert upstream.shed() is None


def test_priority_zero_and_above_are_never_held_back() -> None:
    pool = Pool()
    pool.run(3.0, dict.fromkeys(POOL, 1.0))
    assert pool.shed(-1) is not None
    for priority in (0, 1, 7):
        assert pool.shed(priority) is None


def test_a_lightly_loaded_pool_sheds_nothing() -> None:
    # busy a quarter of the time (a new prompt now and then): under half
    pool = Pool()
    pool.run(3.0, dict.fromkeys(POOL, 0.25))
    assert pool.shed() is None


def test_a_busy_endpoint_in_a_quiet_pool_takes_sheddable_traffic() -> None:
    # prefix affinity sent it to a holder busy prefilling while the rest of the pool is mostly idle
    pool = Pool()
    pool.run(3.0, {"a": 1.0, "b": 0.25, "c": 0.0})  # pool mean about 0.42
    assert pool.shed() is None
    # the endpoint itself must be over it too
    busy = Pool()
    busy.run(3.0, {"a": 0.25, "b": 1.0, "c": 1.0})
    assert busy.shed() is None
    assert busy.detector.shed_reason(-1, "b", busy.now, POOL) is not None


def test_the_fraction_forgets_a_past_burst() -> None:
    pool = Pool()
    pool.run(2.0, dict.fromkeys(POOL, 1.0))
    assert pool.shed() is not None
    pool.run(0.5, {})  # a quiet half second: e^-0.25 = 0.78 of the burst is left (time constant 2 s)
    assert pool.shed() is not None
    pool.run(1.5, {})  # two quiet seconds: e^-1 = 0.37 is left
    assert pool.shed() is None


def test_a_set_fraction_applies() -> None:
    pool = Pool(SaturationConfig(sheddable_max_prefill_busy_fraction=0.9))
    pool.run(3.0, dict.fromkeys(POOL, 0.75))
    assert pool.shed() is None
    low = Pool(SaturationConfig(sheddable_max_prefill_busy_fraction=0.2))
    low.run(3.0, dict.fromkeys(POOL, 0.25))
    assert low.shed() is not None


def test_the_time_constant_is_forty_refresh_intervals() -> None:
    # 2 s at the default 50 ms refresh; a benchmark that slows the model servers down 4x refreshes
    # every 200 ms and its mean then spans the same model time
    assert PREFILL_DUTY_SCRAPES == 40
    assert director_config(EPPOptions(pool_name="p"), accounts_picks=True).saturation.prefill_duty_time_constant == pytest.approx(2.0)
    slow = director_config(EPPOptions(pool_name="p", refresh_metrics_interval=0.2), accounts_picks=True).saturation
    assert slow.prefill_duty_time_constant == pytest.approx(8.0)
    assert SaturationDetector(MetricsStore(), slow, load=lambda h, _m: (0, 0.0),
                              accounts_picks=True).prefill_duty.time_constant == pytest.approx(8.0)
    assert SaturationConfig().prefill_duty_time_constant == PREFILL_DUTY_TIME_CONSTANT_S == 2.0


def test_options_and_flag_set_it() -> None:
    assert director_config(EPPOptions(pool_name="p"), accounts_picks=True).saturation.sheddable_max_prefill_busy_fraction is None
    options = EPPOptions(pool_name="p", sd_sheddable_max_prefill_busy_fraction=0)
    assert director_config(options, accounts_picks=True).saturation.sheddable_max_prefill_busy_fraction == 0
    ctx = epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-max-prefill-busy-fraction", "0.7"])
    assert EPPOptions.from_cli(ctx.params).sd_sheddable_max_prefill_busy_fraction == 0.7
    for bad in ("-0.1", "1.5"):
        with pytest.raises(click.BadParameter):
            epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-max-prefill-busy-fraction", bad])
