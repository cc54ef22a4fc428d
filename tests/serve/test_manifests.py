"""The objects `infergate serve` gives the gateway are what the API server would accept, and the
controller's translator serves them: one pool routes everything, several route by model."""

from __future__ import annotations

from pathlib import Path

import yaml

from infergate.controller.providers.file import FileProvider
from infergate.controller.translator import TranslatorOptions, translate
from infergate.controller.translator.addresses import ClusterAllocator
from infergate.ir import Endpoint
from infergate.serve.manifests import EPPPorts, render
from infergate.serve.members import MemberApplier, pool_key, with_members
from infergate.serve.spec import EndpointSpec, PoolSpec

PREVIEW = "inference.networking.x-k8s.io"
GA = "inference.networking.k8s.io"


def _pool(name: str, group: str, models: tuple[str, ...], ports: tuple[int, ...]) -> PoolSpec:
    return PoolSpec(name=name, namespace="default", group=group, models=models,
                    endpoints=tuple(EndpointSpec(f"{name}-{i}", f"http://127.0.0.1:{p}", "127.0.0.1", p)
                                    for i, p in enumerate(ports)))


def _translate(tmp_path: Path, pools: list[PoolSpec]) -> tuple[FileProvider, object]:
    objects = render(pools, [EPPPorts(9002 + i, 9090 + i) for i in range(len(pools))], port=8080)
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump_all(objects))
    provider = FileProvider(tmp_path)
    provider.scan()
    assert provider.errors == {}  # every object is valid as the API server would check it
    return provider, translate(provider.snapshot(), TranslatorOptions(addresses=ClusterAllocator("127.0.0.1", "127.0.0.1")))


def _conditions(status: dict[str, object]) -> dict[str, str]:
    parents = status.get("parents") or status.get("parent") or []
    return {c["type"]: c["status"] for p in parents for c in p["conditions"]}  # type: ignore[index, union-attr]


def test_one_pool_takes_every_request(tmp_path: Path) -> None:
    _, result = _translate(tmp_path, [_pool("p", GA, (), (8001, 8002))])
    ir = result.ir  # type: ignore[attr-defined]
    (listener,) = ir.listeners
    assert listener.port == 8080 and listener.address == "127.0.0.1"
    (pool,) = ir.pools
    assert pool.picker.endpoints == (Endpoint("127.0.0.1", 9002),) and pool.picker.failure_mode == "FailClose"
    for ref, status in result.statuses.items():  # type: ignore[attr-defined]
        if ref.kind in ("HTTPRoute", "InferencePool"):
            assert set(_conditions(status).values()) == {"True"}, (ref, status)


def test_several_pools_of_both_generations_route_by_model(tmp_path: Path) -> None:
    pools = [_pool("chat", GA, ("chat", "chat-large"), (8001,)), _pool("code", PREVIEW, ("code",), (8101,))]
    _, result = _translate(tmp_path, pools)
    ir = result.ir  # type: ignore[attr-defined]
    assert {p.key for p in ir.pools} == {pool_key(GA, "default", "chat"), pool_key(PREVIEW, "default", "code")}
    routes = [r for vh in ir.listeners[0].virtual_hosts for r in vh.routes]
    text = repr(routes)
    for model in ("chat", "chat-large", "code"):
        assert f"'{model}'" in text
    for ref, status in result.statuses.items():  # type: ignore[attr-defined]
        if ref.kind in ("HTTPRoute", "InferencePool"):
            assert set(_conditions(status).values()) == {"True"}, (ref, status)


def test_members_are_each_endpoint_with_its_own_port(tmp_path: Path) -> None:
    pool = _pool("p", GA, (), (8001, 8002))
    _, result = _translate(tmp_path, [pool])
    ir = result.ir  # type: ignore[attr-defined]
    assert ir.pools[0].endpoints == (Endpoint("127.0.0.1", 8001),)  # an InferencePool has one target port
    members = {pool_key(GA, "default", "p"): (Endpoint("127.0.0.1", 8001), Endpoint("127.0.0.1", 8002))}
    assert with_members(ir, members).pools[0].endpoints == members[pool_key(GA, "default", "p")]
    assert MemberApplier(None, lambda: members).members() == members
