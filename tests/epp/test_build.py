"""build_epp: options -> wired parts (config source, protocol overrides, flow control, saturation)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from infergate.epp.build import build_epp
from infergate.epp.scheduling import ConfigError
from infergate.epp.scheduling.plugins.pickers import RandomPicker, RoundRobinPicker


def test_defaults() -> None:
    parts = build_epp(SimpleNamespace())
    assert parts.scraper.refresh_interval == 0.05 and parts.scraper.protocol.name == "vllm"
    assert [w.scorer.name for w in parts.scheduler.profiles["default"].scorers] == [
        "queue-scorer", "kv-cache-utilization-scorer", "prefix-cache-scorer"]
    assert not parts.director.config.flow_control.enabled
    assert parts.director.config.saturation.queue_depth_threshold == 5
    assert parts.background == [parts.scraper]
    assert b"inference_pool_ready_pods" in parts.metrics.render()


def test_options(tmp_path: Path) -> None:
    config = tmp_path / "epp.yaml"
    config.write_text("apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"
                      "plugins:\n- type: random-picker\n")
    parts = build_epp(SimpleNamespace(
        config_file=str(config), model_server_protocol="sglang", total_queued_requests_metric="q{a=b}",
        lora_info_metric="", refresh_metrics_interval=0.2, flow_control=True, flow_control_max_queue=7,
        sd_queue_depth_threshold=9, model_server_metrics_port=9999, seed=3))
    assert isinstance(parts.scheduler.profiles["default"].picker, RandomPicker)
    assert str(parts.scraper.protocol.waiting_queue[0]) == "q{a=b}" and parts.scraper.protocol.lora_info == ()
    assert parts.scraper.protocol.kv_cache_usage[0].name == "sglang:token_usage"
    assert parts.scraper.refresh_interval == 0.2 and parts.scraper.metrics_port == 9999
    assert parts.director.config.flow_control.enabled and parts.director.config.flow_control.max_queued == 7
    assert parts.director.config.saturation.queue_depth_threshold == 9
    preset = build_epp(SimpleNamespace(scheduling_preset="round-robin"))
    assert isinstance(preset.scheduler.profiles["default"].picker, RoundRobinPicker)
    text = build_epp(SimpleNamespace(config_text=config.read_text()))
    assert isinstance(text.scheduler.profiles["default"].picker, RandomPicker)
    with pytest.raises(ConfigError, match="unknown scheduling preset"):
        build_epp(SimpleNamespace(scheduling_preset="nope"))
