"""Prefill holdback (issue 16, on by default with pick-time accounting): a sheddable request
(priority < 0) is shed when the endpoint it was picked for has more than
``sheddable_max_pending_prefill_tokens`` (512) prompt tokens of other requests waiting to be
prefilled *and* the pool has as many per endpoint on average (the pool is prefill-bound), so a
sheddable request never queues its own prefill behind others' while critical traffic needs
that prefill capacity. A request count (the priority holdback) depends on the hardware; a
prefill queue does not: 512 tokens is a sixteenth of one step's token budget."""

from __future__ import annotations

import click
import pytest

from infergate.cli.epp import command as epp_command
from infergate.epp.build import director_config
from infergate.epp.metrics_scraper import EndpointMetrics, MetricsStore
from infergate.epp.options import EPPOptions
from infergate.epp.saturation import (
    DEFAULT_SHEDDABLE_MAX_PENDING_PREFILL_TOKENS,
    SaturationConfig,
    SaturationDetector,
)

POOL = ["a", "b", "c"]
NOW = 1000.0


def detector(pending: dict[str, float], config: SaturationConfig | None = None,
             accounts_picks: bool = True) -> SaturationDetector:
    store = MetricsStore()
    for h in POOL:
        store.update(h, EndpointMetrics(update_time=NOW))
    return SaturationDetector(store, config or SaturationConfig(), load=lambda h, _m: (1, pending[h]),
                              accounts_picks=accounts_picks)


def test_on_by_default_with_pick_time_accounting_and_off_without() -> None:
    assert DEFAULT_SHEDDABLE_MAX_PENDING_PREFILL_TOKENS == 512
    busy = {"a": 1500.0, "b": 900.0, "c": 600.0}  # mean 1,000
    on = detector(busy)
    assert on.limits.sheddable_max_pending_prefill_tokens == 512
    reason = on.shed_reason(-1, "a", NOW, POOL)
    assert reason is not None and "prefill holdback" in reason and "1500 prompt tokens" in reason
    # upstream v1.0's profile (no inflight-load-producer): upstream's behaviour, no holdback
    assert detector(busy, accounts_picks=False).shed_reason(-1, "a", NOW, POOL) is None
    assert detector(busy, SaturationConfig(sheddable_max_pending_prefill_tokens=0)).shed_reason(
        -1, "a", NOW, POOL) is None


def test_priority_zero_and_above_are_never_held_back() -> None:
    full = detector({h: 100_000.0 for h in POOL})
    assert full.shed_reason(-1, "a", NOW, POOL) is not None
    for priority in (0, 1, 7):
        assert full.shed_reason(priority, "a", NOW, POOL) is None


def test_a_busy_endpoint_in_an_idle_pool_takes_sheddable_traffic() -> None:
    # prefix affinity sent the request to a holder that is prefilling a cold prompt while the
    # rest of the pool is idle: a lightly loaded pool sheds nothing
    lone = detector({"a": 3000.0, "b": 0.0, "c": 0.0})  # mean 1,000 > 512: the pool is busy too
    assert lone.shed_reason(-1, "a", NOW, POOL) is not None
    quiet = detector({"a": 1200.0, "b": 0.0, "c": 0.0})  # mean 400: room elsewhere
    assert quiet.shed_reason(-1, "a", NOW, POOL) is None
    assert quiet.shed_reason(-1, "a", NOW) is not None  # no pool given: the endpoint alone


def test_the_endpoint_itself_must_be_over_the_limit() -> None:
    det = detector({"a": 512.0, "b": 5000.0, "c": 5000.0})  # at the limit, not over it
    assert det.shed_reason(-1, "a", NOW, POOL) is None
    assert detector({"a": 513.0, "b": 5000.0, "c": 5000.0}).shed_reason(-1, "a", NOW, POOL) is not None


def test_a_set_limit_applies_and_the_general_limits_still_shed_first() -> None:
    busy = {"a": 1500.0, "b": 1500.0, "c": 1500.0}
    assert detector(busy, SaturationConfig(sheddable_max_pending_prefill_tokens=2000)).shed_reason(
        -1, "a", NOW, POOL) is None
    full = detector({h: 5000.0 for h in POOL}, SaturationConfig(max_pending_prefill_tokens=4000))
    assert full.shed_reason(-1, "a", NOW, POOL) == "system saturated, sheddable request dropped"


def test_options_and_flag_set_it() -> None:
    assert director_config(EPPOptions(pool_name="p"), accounts_picks=True).saturation.sheddable_max_pending_prefill_tokens is None
    options = EPPOptions(pool_name="p", sd_sheddable_max_pending_prefill_tokens=0)
    assert director_config(options, accounts_picks=True).saturation.sheddable_max_pending_prefill_tokens == 0
    ctx = epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-max-pending-prefill-tokens", "2048"])
    assert EPPOptions.from_cli(ctx.params).sd_sheddable_max_pending_prefill_tokens == 2048
    with pytest.raises(click.BadParameter):
        epp_command.make_context("epp", ["--pool-name", "p", "--sd-sheddable-max-pending-prefill-tokens", "-5"])
