"""Which EPP presets `infergate bench peers` can run as routers."""

from __future__ import annotations

from click.testing import CliRunner

from infergate.bench.peers.routers import ALL_ROUTERS, InfergateRouter, make_router
from infergate.cli.bench import command as bench_command
from infergate.epp.scheduling.config import PRESETS


def test_upstream_default_is_a_router_and_all_has_no_duplicate_config() -> None:
    router = make_router("infergate-upstream-v1.0")
    assert isinstance(router, InfergateRouter) and router.profile == "upstream-v1.0"
    assert isinstance(make_router("infergate-default"), InfergateRouter)
    # `all` runs each EPP config once: predicted-latency is the default, so only infergate-default
    epp = [r[len("infergate-"):] for r in ALL_ROUTERS if r.startswith("infergate-")]
    assert len({PRESETS[p] for p in epp}) == len(epp)
    assert "infergate-predicted-latency" not in ALL_ROUTERS


def test_epp_args_reach_infergate_routers_and_bad_ones_are_refused() -> None:
    router = make_router("infergate-default", None, ("--sd-max-inflight-per-endpoint", "32"))
    assert isinstance(router, InfergateRouter) and router.epp_args == ("--sd-max-inflight-per-endpoint", "32")
    for bad, why in (("--no-such-flag 1", "No such option '--no-such-flag'"),
                     ("--sd-max-inflight-per-endpoint -1", "-1 is not in the range x>=0"),
                     ("'--unclosed", "No closing quotation")):
        result = CliRunner().invoke(bench_command, ["peers", "--epp-args", bad])
        assert result.exit_code == 2, result.output
        assert "--epp-args" in result.output and why in result.output, result.output
