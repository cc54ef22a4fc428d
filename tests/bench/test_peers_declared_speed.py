"""`bench peers --declare-slow-speed-factor X`: the heterogeneous pool's slow replicas carry the pod
label infergate.io/speed-factor=X in infergate's EPP pool file (what an operator who knows the
hardware declares); the report says so; stored runs with another value are not merged."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from infergate.bench.peers.report import markdown
from infergate.bench.peers.run import PeersConfig, PeersResult
from infergate.bench.peers.stored import StoredRunError, merge
from infergate.bench.peers.workloads import make
from infergate.bench.topology import static_pool_file
from infergate.epp.sources.static import load_static


def test_the_slow_replicas_declare_the_factor_in_the_epps_pool_file(tmp_path: Path) -> None:
    heterogeneous = make("heterogeneous", 10.0, seed=1)
    assert heterogeneous.pool.slow_replicas == 2 and heterogeneous.pool.replicas == 4
    labels = heterogeneous.pool.declared_labels(2.0)
    assert labels == ({}, {}, {"infergate.io/speed-factor": "2"}, {"infergate.io/speed-factor": "2"})
    assert heterogeneous.pool.declared_labels(None) == ()  # the default: no label
    assert make("shared-prefix", 10.0, seed=1).pool.declared_labels(2.0) == ()  # no slow replica, nothing to declare
    endpoints = [f"127.0.0.{i + 1}:8000" for i in range(4)]
    path = static_pool_file(tmp_path / "pool.yaml", pool_name="pool", endpoints=endpoints, labels=labels)
    pods = load_static(path).pods
    assert [dict(p.labels) for p in pods] == [{}, {}, {"infergate.io/speed-factor": "2"},
                                              {"infergate.io/speed-factor": "2"}]
    plain = static_pool_file(tmp_path / "plain.yaml", pool_name="pool", endpoints=endpoints)
    assert "labels" not in plain.read_text()


def test_the_report_states_the_declared_factor_and_runs_without_it_are_another_measurement() -> None:
    declared = PeersResult(PeersConfig(workloads=("heterogeneous",), routers=("oracle",),
                                       declare_slow_speed_factor=2.0), [], {}, {})
    assert "slower replicas declare `infergate.io/speed-factor: 2`" in markdown(declared)
    plain = PeersResult(PeersConfig(workloads=("heterogeneous",), routers=("sglang-cache-aware",)), [], {}, {})
    assert "speed-factor" not in markdown(plain)
    with pytest.raises(StoredRunError, match=r"declare_slow_speed_factor 2\.0 vs None"):
        merge([declared, plain])


def test_the_flag_is_checked() -> None:
    from infergate.cli.bench import command

    for bad in ("0", "-1", "101", "fast"):
        result = CliRunner().invoke(command, ["peers", "--declare-slow-speed-factor", bad, "--routers", "oracle"])
        assert result.exit_code == 2 and "--declare-slow-speed-factor" in result.output, (bad, result.output)
