"""Per-endpoint request and error rates: from the pool's EPP (infergate_epp_endpoint_*, what it sent
to each endpoint), else the model server's own finished-request counter; never a total since start."""

from __future__ import annotations

from rich.console import Console

from infergate.status import metrics as m
from infergate.status.collect import NOT_MEASURED, EndpointRates, endpoint_rates
from infergate.status.model import EndpointStatus, PoolStatus, StatusSnapshot
from infergate.status.render import render

EPP_BEFORE = m.parse("""\
# TYPE infergate_epp_endpoint_requests counter
infergate_epp_endpoint_requests_total{endpoint="10.0.0.1:8000"} 100
infergate_epp_endpoint_requests_total{endpoint="10.0.0.2:8000"} 40
# TYPE infergate_epp_endpoint_errors counter
infergate_epp_endpoint_errors_total{endpoint="10.0.0.1:8000"} 2
""")
EPP_AFTER = m.parse("""\
# TYPE infergate_epp_endpoint_requests counter
infergate_epp_endpoint_requests_total{endpoint="10.0.0.1:8000"} 120
infergate_epp_endpoint_requests_total{endpoint="10.0.0.2:8000"} 45
infergate_epp_endpoint_requests_total{endpoint="[fd00::3]:8000"} 8
# TYPE infergate_epp_endpoint_errors counter
infergate_epp_endpoint_errors_total{endpoint="10.0.0.1:8000"} 6
""")
SERVER_BEFORE = m.parse("""\
# TYPE vllm:request_success counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 10
vllm:request_success_total{finished_reason="length",model_name="m"} 5
""")
SERVER_AFTER = m.parse("""\
# TYPE vllm:request_success counter
vllm:request_success_total{finished_reason="stop",model_name="m"} 16
vllm:request_success_total{finished_reason="length",model_name="m"} 9
""")
NO_SERVER = ("down", "down")


def test_the_epp_counters_give_each_endpoint_its_requests_and_errors_per_second() -> None:
    epp = (EPP_BEFORE, EPP_AFTER)
    assert endpoint_rates("10.0.0.1", 8000, 2.0, epp, NO_SERVER) == EndpointRates(10.0, 2.0, "epp")
    assert endpoint_rates("10.0.0.2", 8000, 2.0, epp, NO_SERVER) == EndpointRates(2.5, 0.0, "epp")
    # IPv6: the EPP writes the address in brackets; a new series counts from zero
    assert endpoint_rates("fd00::3", 8000, 2.0, epp, NO_SERVER) == EndpointRates(4.0, 0.0, "epp")
    # an endpoint the EPP never picked, and a port that is not the picked one
    assert endpoint_rates("10.0.0.9", 8000, 2.0, epp, NO_SERVER) == EndpointRates(0.0, 0.0, "epp")
    assert endpoint_rates("10.0.0.1", 8001, 2.0, epp, NO_SERVER) == EndpointRates(0.0, 0.0, "epp")


def test_a_restarted_epp_counts_from_zero() -> None:
    restarted = m.parse('infergate_epp_endpoint_requests_total{endpoint="10.0.0.1:8000"} 6\n')
    assert endpoint_rates("10.0.0.1", 8000, 3.0, (EPP_BEFORE, restarted), NO_SERVER) == EndpointRates(2.0, 0.0, "epp")


def test_without_the_epp_counters_the_model_servers_finished_requests_are_used() -> None:
    upstream_epp = m.parse('inference_model_request_total{model_name="m",target_model_name="m"} 3\n')
    rates = endpoint_rates("10.0.0.1", 8000, 2.0, (upstream_epp, upstream_epp), (SERVER_BEFORE, SERVER_AFTER))
    assert rates == EndpointRates(5.0, None, "model server")
    # the EPP unreachable: the same
    assert endpoint_rates("10.0.0.1", 8000, 2.0, ("refused", "refused"),
                          (SERVER_BEFORE, SERVER_AFTER)) == EndpointRates(5.0, None, "model server")
    sglang = (m.parse("sglang:num_requests_total 7\n"), m.parse("sglang:num_requests_total 13\n"))
    assert endpoint_rates("10.0.0.1", 8000, 3.0, ("x", "x"), sglang) == EndpointRates(2.0, None, "model server")


def test_no_rate_without_both_scrapes_of_the_window() -> None:
    # one scrape only: its totals since start are not a rate over the window
    assert endpoint_rates("10.0.0.1", 8000, 2.0, ("timeout", EPP_AFTER), ("timeout", SERVER_AFTER)) == NOT_MEASURED
    assert endpoint_rates("10.0.0.1", 8000, 2.0, ("x", "x"), (m.parse("vllm:num_requests_running 1\n"),) * 2) \
        == NOT_MEASURED
    assert endpoint_rates("10.0.0.1", 8000, 0.0, (EPP_BEFORE, EPP_AFTER), NO_SERVER) == NOT_MEASURED


def test_the_endpoints_table_shows_each_endpoints_rates() -> None:
    def endpoint(name: str, rps: float | None, eps: float | None, source: str | None) -> EndpointStatus:
        return EndpointStatus(name, "10.0.0.1", 8000, True, "http://10.0.0.1:8000/metrics", reachable=True,
                              requests_per_s=rps, errors_per_s=eps, requests_source=source)

    pool = PoolStatus("default", "pool", "inference.networking.k8s.io", "GA", {}, [8000], "epp:9002", None, True, None,
                      "FailClose", True, [endpoint("pod-a", 12.5, 0.5, "epp"), endpoint("pod-b", 3.0, None,
                                                                                       "model server"),
                                          endpoint("pod-c", None, None, None)], [], [], None)
    snapshot = StatusSnapshot("test", "2026-01-01T00:00:00Z", 2.0, [], [], [pool])
    console = Console(width=200, record=True)
    console.print(render(snapshot))
    text = console.export_text()
    assert "REQ/S" in text and "ERR/S" in text
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("│ pod-")}
    assert "12.5" in lines["pod-a"] and "0.5" in lines["pod-a"]
    assert "3.0 (server)" in lines["pod-b"]
    assert snapshot.to_dict()["pools"][0]["endpoints"][0]["requests_per_s"] == 12.5
