"""What `status` derives from /metrics pages: counters, histogram quantiles, LoRA info."""

from __future__ import annotations

import math

import pytest

from infergate.status import metrics as m
from infergate.status.collect import endpoint_status, pool_traffic

EPP_BEFORE = """\
# TYPE inference_model_request counter
inference_model_request_total{model_name="a",target_model_name="a"} 10
inference_model_request_total{model_name="b",target_model_name="b"} 5
# TYPE inference_model_request_error counter
inference_model_request_error_total{model_name="a",target_model_name="a",error_code="429"} 1
# TYPE inference_model_request_duration_seconds histogram
inference_model_request_duration_seconds_bucket{model_name="a",target_model_name="a",le="0.1"} 5
inference_model_request_duration_seconds_bucket{model_name="a",target_model_name="a",le="1.0"} 10
inference_model_request_duration_seconds_bucket{model_name="a",target_model_name="a",le="+Inf"} 10
inference_model_request_duration_seconds_count{model_name="a",target_model_name="a"} 10
inference_model_request_duration_seconds_sum{model_name="a",target_model_name="a"} 3
"""

EPP_AFTER = """\
# TYPE inference_model_request counter
inference_model_request_total{model_name="a",target_model_name="a"} 30
inference_model_request_total{model_name="b",target_model_name="b"} 5
# TYPE inference_model_request_error counter
inference_model_request_error_total{model_name="a",target_model_name="a",error_code="429"} 3
inference_model_request_error_total{model_name="a",target_model_name="a",error_code="503"} 1
# TYPE inference_model_request_duration_seconds histogram
inference_model_request_duration_seconds_bucket{model_name="a",target_model_name="a",le="0.1"} 15
inference_model_request_duration_seconds_bucket{model_name="a",target_model_name="a",le="1.0"} 30
inference_model_request_duration_seconds_bucket{model_name="a",target_model_name="a",le="+Inf"} 30
inference_model_request_duration_seconds_count{model_name="a",target_model_name="a"} 30
inference_model_request_duration_seconds_sum{model_name="a",target_model_name="a"} 9
# TYPE inference_extension_flow_control_queue_size gauge
inference_extension_flow_control_queue_size 4
"""

VLLM = """\
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="m"} 3
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="m"} 7
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="m"} 0.25
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{model_name="m"} %d
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{model_name="m"} %d
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="4",running_lora_adapters="",waiting_lora_adapters=""} 100.0
vllm:lora_requests_info{max_lora="4",running_lora_adapters="food-review,sql",waiting_lora_adapters="x"} 200.0
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.02"} %d
vllm:time_to_first_token_seconds_bucket{model_name="m",le="0.04"} %d
vllm:time_to_first_token_seconds_bucket{model_name="m",le="+Inf"} %d
vllm:time_to_first_token_seconds_count{model_name="m"} %d
vllm:time_to_first_token_seconds_sum{model_name="m"} 1
"""


def test_quantile_interpolates_like_prometheus() -> None:
    cumulative = {0.1: 10.0, 0.5: 20.0, math.inf: 20.0}
    assert m.quantile(0.5, cumulative) == pytest.approx(0.1)
    assert m.quantile(0.75, cumulative) == pytest.approx(0.3)
    assert m.quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    assert m.quantile(0.99, {0.1: 1.0, math.inf: 10.0}) == pytest.approx(0.1)  # in +Inf: the highest bound


def test_pool_traffic_is_the_window_between_two_scrapes() -> None:
    traffic = pool_traffic(2.0, m.parse(EPP_BEFORE), m.parse(EPP_AFTER), ttft={})
    assert traffic is not None
    assert traffic.requests == 20 and traffic.requests_per_s == 10
    assert traffic.errors == 3 and traffic.errors_by_code == {"429": 2, "503": 1}
    assert traffic.error_ratio == pytest.approx(0.15)
    # 20 new requests: 10 under 0.1 s, 10 between 0.1 and 1
    assert traffic.latency_p50_s == pytest.approx(0.1)
    assert traffic.latency_p90_s == pytest.approx(0.1 + 0.9 * 0.8)
    assert traffic.ttft_p50_s is None
    assert traffic.held_in_epp == 4  # waiting in the EPP's flow control at the second scrape
    before_only = pool_traffic(2.0, [], m.parse(EPP_BEFORE), ttft={})
    assert before_only is not None and before_only.held_in_epp is None  # an EPP without the gauge
    assert pool_traffic(2.0, [], "connection refused", ttft={}) is None


def test_a_counter_reset_counts_from_zero() -> None:
    before = m.parse(EPP_AFTER)
    after = m.parse(EPP_BEFORE)  # restarted EPP, fewer than before
    assert m.delta(before, after, "inference_model_request_total") == 15


def test_endpoint_metrics_from_vllm_names() -> None:
    before = m.parse(VLLM % (100, 20, 0, 0, 0, 0))
    after = m.parse(VLLM % (200, 70, 8, 10, 10, 10))
    e = endpoint_status("pod-0", "10.0.0.1", 8000, True, before, after)
    assert e.reachable and (e.queue, e.running, e.kv_cache) == (3, 7, 0.25)
    assert e.prefix_cache_hit_rate == pytest.approx(0.5)  # 50 hits of 100 queries in the window
    assert e.lora_running == ["food-review", "sql"] and e.lora_waiting == ["x"]  # the newest info sample
    assert e.ttft_p50_s is not None and e.ttft_p50_s <= 0.02
    down = endpoint_status("pod-1", "10.0.0.2", 8000, True, "refused", "ConnectError: refused")
    assert not down.reachable and down.error == "ConnectError: refused" and down.queue is None
