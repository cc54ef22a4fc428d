"""`infergate epp` flags, the in-process EPPRunner (health, metrics, TLS) and graceful stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import grpc
import httpx
import pytest
import yaml
from click.testing import CliRunner
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from infergate.cli.epp import command as epp_command
from infergate.cli.options import DURATION
from infergate.epp.extproc import health
from infergate.epp.runner import EPPOptions, EPPRunner
from infergate.sim import SimCluster, SimConfig
from infergate.util.net import free_port


def test_go_durations() -> None:
    assert DURATION.convert("50ms", None, None) == pytest.approx(0.05)
    assert DURATION.convert("5s", None, None) == 5.0 and DURATION.convert("1m30s", None, None) == 90.0
    assert DURATION.convert("0.25", None, None) == 0.25 and DURATION.convert(2, None, None) == 2.0
    with pytest.raises(click.BadParameter, match="not a duration"):
        DURATION.convert("5 parsecs", None, None)
    with pytest.raises(click.BadParameter, match="negative"):
        DURATION.convert("-1s", None, None)


def _parse(args: list[str]) -> dict[str, Any]:
    ctx = epp_command.make_context("epp", args)
    return dict(ctx.params)


def test_flags_match_upstream_defaults_and_accept_go_spelling() -> None:
    params = _parse(["--pool-name", "p"])
    assert (params["pool_namespace"], params["pool_group"]) == ("default", "inference.networking.k8s.io")
    assert (params["grpc_port"], params["grpc_health_port"], params["metrics_port"]) == (9002, 9003, 9090)
    assert params["refresh_metrics_interval"] == pytest.approx(0.05)
    assert params["metrics_staleness_threshold"] == 2.0 and params["secure_serving"] is False
    go = _parse(["-pool-name", "p", "-pool-namespace=prod", "-refresh-metrics-interval", "100ms", "-v=4",
                 "-pool-group", "inference.networking.x-k8s.io"])
    assert (go["pool_name"], go["pool_namespace"], go["verbosity"]) == ("p", "prod", 4)
    assert go["refresh_metrics_interval"] == pytest.approx(0.1) and go["pool_group"].endswith("x-k8s.io")
    options = EPPOptions.from_cli(go)
    assert options.pool_namespace == "prod" and options.refresh_metrics_interval == pytest.approx(0.1)


def test_upstream_chart_arguments_parse() -> None:
    # what upstream v1.0's inferencepool chart passes for a Triton pool
    params = _parse(["--pool-name", "pool", "--pool-namespace", "ns", "--zap-encoder", "json", "--config-file",
                     __file__, "--v", "1", "--total-queued-requests-metric",
                     "nv_trt_llm_request_metrics{request_type=waiting}", "--kv-cache-usage-percentage-metric",
                     "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}", "--lora-info-metric", ""])
    options = EPPOptions.from_cli(params)
    assert options.lora_info_metric == "" and options.total_queued_requests_metric.startswith("nv_trt_llm")
    assert params["zap_encoder"] == "json" and params["verbosity"] == 1


def test_flag_errors_are_clear(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(epp_command, [])
    assert missing.exit_code == 2 and "--pool-name" in missing.output
    config = tmp_path / "c.yaml"
    config.write_text("x")
    both = runner.invoke(epp_command, ["--pool-name", "p", "--config-file", str(config), "--config-text", "y"])
    assert both.exit_code == 2 and "mutually exclusive" in both.output
    group = runner.invoke(epp_command, ["--pool-name", "p", "--pool-group", "example.com"])
    assert group.exit_code == 2 and "--pool-group" in group.output
    spec = runner.invoke(epp_command, ["--pool-name", "p", "--total-queued-requests-metric", "queue{broken"])
    assert spec.exit_code == 2 and "--total-queued-requests-metric" in spec.output
    stale = runner.invoke(epp_command, ["--pool-name", "p"], env={"SD_METRICS_STALENESS_THRESHOLD": "soon"})
    assert stale.exit_code == 2 and "SD_METRICS_STALENESS_THRESHOLD='soon' is not a duration" in stale.output


async def test_runner_serves_health_metrics_and_tls(tmp_path: Path) -> None:
    sim_port = free_port()
    cluster = SimCluster(SimConfig(time_scale=20.0), ["127.0.0.1"], sim_port)
    await cluster.start()
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(yaml.safe_dump({
        "pool": {"name": "pool", "targetPorts": [sim_port]},
        "endpoints": [{"name": "pod-0", "address": "127.0.0.1", "port": sim_port, "ready": True}],
    }))
    options = EPPOptions(pool_name="pool", host="127.0.0.1", grpc_port=0, grpc_health_port=0, metrics_port=0,
                         static_file=str(pool_file), secure_serving=True, health_checking=True, seed=1,
                         shutdown_grace=0.5)
    runner = EPPRunner(options)
    await runner.start()
    try:
        assert runner.ready_line().startswith("ready grpc=")
        assert runner.grpc_server and runner.health_server and runner.metrics_server
        for _ in range(500):  # bounded at ~10 s
            if runner.is_ready():
                break
            await asyncio.sleep(0.02)
        assert await health.check(f"127.0.0.1:{runner.health_server.port}", "inference-extension") == health.SERVING
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{runner.metrics_server.port}/metrics")).text
        assert "inference_extension_info" in text and "inference_pool_ready_pods" in text

        # the ext_proc port speaks TLS with a self-signed certificate (upstream's default)
        target = f"127.0.0.1:{runner.grpc_server.port}"
        async with grpc.aio.insecure_channel(target) as plain:
            with pytest.raises(grpc.aio.AioRpcError):
                await plain.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=2)
        cert = runner.tls_certificate
        assert cert is not None
        async with grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=cert)) as channel:
            call = pb_grpc.ExternalProcessorStub(channel).Process()
            await call.write(pb.ProcessingRequest(request_headers=pb.HttpHeaders(headers=core_pb.HeaderMap(
                headers=[core_pb.HeaderValue(key=":path", raw_value=b"/v1/completions")]))))
            await call.write(pb.ProcessingRequest(request_body=pb.HttpBody(
                body=json.dumps({"model": "m", "prompt": "hi"}).encode(), end_of_stream=True)))
            reply = await call.read()
            headers = {h.header.key: h.header.raw_value for h in reply.request_headers.response.header_mutation.set_headers}
            assert headers["x-gateway-destination-endpoint"] == f"127.0.0.1:{sim_port}".encode()
            await call.done_writing()
    finally:
        await runner.stop()
        await cluster.stop()
