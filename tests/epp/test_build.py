"""build_epp: EPPOptions -> wired parts (config source, protocol overrides, flow control, saturation),
and the same wiring behind `infergate epp` (its flags, EPPRunner)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from infergate.cli.epp import command as epp_command
from infergate.epp.build import build_epp
from infergate.epp.metrics import EppMetrics, PoolSnapshot
from infergate.epp.options import EPPOptions
from infergate.epp.runner import EPPRunner
from infergate.epp.scheduling import ConfigError
from infergate.epp.scheduling.plugins.pickers import RandomPicker, RoundRobinPicker


def test_defaults() -> None:
    parts = build_epp(EPPOptions(pool_name="pool"))
    assert parts.scraper.refresh_interval == 0.05 and parts.scraper.protocol.name == "vllm"
    # the default preset is predicted-latency (issue 16; upstream v1.0's is the upstream-v1.0 preset)
    profile = parts.scheduler.profiles["default"]
    assert [f.name for f in profile.filters] == ["prefix-cache-affinity-filter"]
    assert [(w.scorer.name, w.weight) for w in profile.scorers] == [
        ("prefix-cache-scorer", 0), ("predicted-ttft-scorer", 1)]
    assert [p.name for p in parts.scheduler.pre_request_plugins] == ["prefix-cache-scorer", "inflight-load-producer"]
    # flow control on (the default profile accounts its picks: late binding, issue 16), placement by the profile
    assert parts.director.config.flow_control.enabled and parts.director.config.flow_control.placement == "scheduler"
    assert parts.director.config.flow_control.max_queued == 1024
    assert parts.director.config.saturation.queue_depth_threshold == 5
    assert parts.background == [parts.scraper]
    assert b"inference_pool_ready_pods" in parts.metrics.render()


def test_options(tmp_path: Path) -> None:
    config = tmp_path / "epp.yaml"
    config.write_text("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
                      "plugins:\n- type: random-picker\n")
    parts = build_epp(EPPOptions(
        pool_name="pool", config_file=str(config), model_server_protocol="sglang",
        total_queued_requests_metric="q{a=b}", lora_info_metric="", refresh_metrics_interval=0.2,
        flow_control=True, flow_control_max_queued=7, sd_queue_depth_threshold=9, model_server_metrics_port=9999,
        seed=3))
    assert isinstance(parts.scheduler.profiles["default"].picker, RandomPicker)
    assert str(parts.scraper.protocol.waiting_queue[0]) == "q{a=b}" and parts.scraper.protocol.lora_info == ()
    assert parts.scraper.protocol.kv_cache_usage[0].name == "sglang:token_usage"
    assert parts.scraper.refresh_interval == 0.2 and parts.scraper.metrics_port == 9999
    assert parts.director.config.flow_control.enabled and parts.director.config.flow_control.max_queued == 7
    assert parts.director.config.saturation.queue_depth_threshold == 9
    preset = build_epp(EPPOptions(pool_name="pool", scheduling_preset="round-robin"))
    assert isinstance(preset.scheduler.profiles["default"].picker, RoundRobinPicker)
    text = build_epp(EPPOptions(pool_name="pool", config_text=config.read_text()))
    assert isinstance(text.scheduler.profiles["default"].picker, RandomPicker)
    with pytest.raises(ConfigError, match="unknown scheduling preset"):
        build_epp(EPPOptions(pool_name="pool", scheduling_preset="nope"))


def _cli_options(args: list[str]) -> EPPOptions:
    return EPPOptions.from_cli(epp_command.make_context("epp", ["--pool-name", "pool", *args]).params)


def test_every_cli_flag_is_an_option_field() -> None:
    process_only = {"verbosity", "zap_encoder", "enable_pprof"}  # logging and an accepted no-op
    flags = {p.name for p in epp_command.params} - process_only
    assert flags <= {f.name for f in fields(EPPOptions)}, flags - {f.name for f in fields(EPPOptions)}


def test_every_cli_flag_reaches_the_wiring(monkeypatch: pytest.MonkeyPatch) -> None:
    # issue 11 finding 1: build_epp read `flow_control_max_queue`, the flag is --flow-control-max-queued
    monkeypatch.setenv("SD_QUEUE_DEPTH_THRESHOLD", "11")
    monkeypatch.setenv("SD_METRICS_STALENESS_THRESHOLD", "1m30s")
    parts = build_epp(_cli_options(["--flow-control", "--flow-control-max-queued", "7",
                                    "--flow-control-max-wait", "1m30s", "--refresh-metrics-interval", "20ms",
                                    "--metrics-staleness-threshold", "3s", "--model-server-protocol", "sglang"]))
    flow = parts.director.config.flow_control
    assert (flow.enabled, flow.max_queued, flow.max_wait) == (True, 7, 90.0)
    saturation = parts.director.config.saturation
    assert (saturation.queue_depth_threshold, saturation.metrics_staleness_threshold) == (11, 90.0)
    assert parts.scraper.refresh_interval == pytest.approx(0.02) and parts.store.staleness_threshold == 3.0
    assert parts.scraper.protocol.name == "sglang"


async def test_infergate_epp_runs_build_epp(tmp_path: Path) -> None:
    # issue 11 finding 1: EPPRunner had its own wiring, without the saturation-detector options
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(yaml.safe_dump({"pool": {"name": "pool", "targetPorts": [8000]}, "endpoints": []}))
    options = EPPOptions(pool_name="pool", host="127.0.0.1", grpc_port=0, grpc_health_port=0, metrics_port=0,
                         static_file=str(pool_file), flow_control_max_queued=3, sd_queue_depth_threshold=2,
                         sd_kv_cache_util_threshold=0.5, sd_metrics_staleness_threshold=0.1,
                         refresh_prometheus_metrics_interval=7.0, shutdown_grace=0.1)
    runner = EPPRunner(options)
    await runner.start()
    try:
        assert runner.director is not None and runner.parts is not None
        config = runner.director.config
        assert config.flow_control.max_queued == 3
        assert (config.saturation.queue_depth_threshold, config.saturation.kv_cache_util_threshold,
                config.saturation.metrics_staleness_threshold) == (2, 0.5, 0.1)
        assert runner.director.saturation.config == config.saturation
        assert runner.parts.background == [runner.parts.scraper]
    finally:
        await runner.stop()


def _ready_pods(render: bytes) -> list[float]:
    return [s.value for f in text_string_to_metric_families(render.decode()) if f.name == "inference_pool_ready_pods"
            for s in f.samples]


def test_pool_gauges_refresh_at_the_prometheus_metrics_interval() -> None:
    # issue 11 finding 10: --refresh-prometheus-metrics-interval was parsed and ignored
    assert build_epp(_cli_options(["--refresh-prometheus-metrics-interval", "7s"])).metrics.pool_gauges_interval == 7
    assert build_epp(EPPOptions(pool_name="pool")).metrics.pool_gauges_interval == 5.0  # upstream's default
    now = [1000.0]
    pods = [3]
    metrics = EppMetrics(pool_gauges_interval=5.0, clock=lambda: now[0])
    metrics.set_pool_snapshot(lambda: PoolSnapshot("pool", [(f"pod-{i}", 0, 0.0) for i in range(pods[0])]))
    assert _ready_pods(metrics.render()) == [3.0]
    pods[0] = 2
    now[0] += 4.9
    assert _ready_pods(metrics.render()) == [3.0]  # not recomputed within the interval
    now[0] += 0.2
    assert _ready_pods(metrics.render()) == [2.0]
    every_scrape = EppMetrics(pool_gauges_interval=0.0, clock=lambda: now[0])
    every_scrape.set_pool_snapshot(lambda: PoolSnapshot("pool", [(f"pod-{i}", 0, 0.0) for i in range(pods[0])]))
    assert _ready_pods(every_scrape.render()) == [2.0]
    pods[0] = 1
    assert _ready_pods(every_scrape.render()) == [1.0]
