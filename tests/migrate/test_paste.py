"""The source document's zero-downtime commands pasted into a terminal back to back, with no
wait between them, under 50 streamed requests/s from the official ``openai`` client: no
request may fail (issue 17, "the newcomer's path").

The commands are the document's own, extracted and substituted as the acceptance test does
(``tests/acceptance``, docs/acceptance.md), on a fresh ``infergate up`` with the document's
GatewayClass and the preview stack the document starts from. They run in one ``bash`` without
``-e``, as a paste does: the v1 queries the document places before stage 1 fail there (no v1
CRD yet) and the paste goes on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.conftest import Cluster, can_bind_port_80, private_cidr, wait_until
from tests.acceptance.test_seed_document import (
    MODEL,
    PROMPT,
    gateway_address,
    install_preview_stack,
    route_programmed,
    seed_commands,
    write_objectives_crd,
)

from .openai_load import OpenAIStreamLoad

# exclusive: asserts zero failures under a sustained 50 req/s, so it runs alone after the parallel suite
pytestmark = [pytest.mark.e2e, pytest.mark.exclusive, pytest.mark.xdist_group("migrate-paste"),
              pytest.mark.timeout(180)]
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
GA = "vllm-llama3-8b-instruct-ga"
# The zero-downtime section's commands, in the document's order (both CRD variants of stage 1, as
# a reader who pastes the whole section does; the second one changes nothing).
PASTED = ("check_v1alpha2", "get_pools_v1alpha2", "get_pools_v1", "get_infpool", "apply_v1_crds",
          "apply_objectives_crd", "helm_install_ga", "apply_objectives", "route_50_50", "route_100",
          "get_gateway_final", "curl_final", "delete_v1alpha2_crds_final")


@pytest.fixture
def up(tmp_path: Path, repo_root: Path, kubectl_bin: str, helm_bin: str) -> Iterator[Cluster]:
    if not can_bind_port_80():
        pytest.fail("the document's Gateway listens on port 80: run as root or with CAP_NET_BIND_SERVICE",
                    pytrace=False)
    cluster = Cluster(repo_root=repo_root, state_dir=tmp_path / "state", tools_dir=Path(kubectl_bin).parent,
                      transcript=tmp_path / "transcript.log")
    cluster.start(pod_cidr=private_cidr(8000), address_pool=private_cidr(80))
    try:
        yield cluster
    finally:
        cluster.stop()


def test_the_documents_zero_downtime_commands_pasted_back_to_back_lose_no_request(
        up: Cluster, seed_dir: Path, tmp_path: Path) -> None:
    commands = seed_commands(seed_dir, write_objectives_crd(up, tmp_path))
    install_preview_stack(up)
    address = gateway_address(up)
    load = OpenAIStreamLoad(f"http://{address}:80/v1", models=("food-review", LLAMA), prompt=PROMPT, rate=50)
    with load.in_thread():
        time.sleep(1.0)  # the load runs before the first command
        pasted_at = time.monotonic()
        paste = up.bash("set +e\n" + "\n".join(commands[name] for name in PASTED), check=False, timeout=120)
        pasted_s = time.monotonic() - pasted_at
        # the paste's last commands: the 100 % route, its curl (a request too: 200) and the CRD deletion
        assert "httproute.gateway.networking.k8s.io/llm-route configured" in paste.stdout, paste.output
        assert "HTTP/1.1 200 OK" in paste.stdout, paste.output
        assert '"inferencepools.inference.networking.x-k8s.io" deleted' in paste.stdout, paste.output
        wait_until(lambda: route_programmed(up, {GA}) or None, 30, "llm-route programmed 100 % to the v1 pool")
        routed = time.monotonic()
        time.sleep(2.0)  # the load goes on after the route is live
    failed = load.failed()
    up.note(f"pasted in {pasted_s:.1f}s; load: {len(load.outcomes)} requests at {load.achieved_rate():.1f}/s, "
            f"{len(failed)} failed, answered by {dict(load.answered_by())}")
    assert not failed, (f"{len(failed)} of {len(load.outcomes)} failed: "
                        f"{Counter((o.status, o.error[:80]) for o in failed)}")
    assert load.achieved_rate() >= 45 and len(load.outcomes) >= 150, (load.achieved_rate(), len(load.outcomes))
    # both generations served food-review during the paste (the preview pool's canary rewrites it to
    # food-review-1/-2; the v1 pool passes it through), and only the v1 pool once the route is 100 %
    served = load.answered_by()
    assert served[MODEL] > 0 and served["food-review-1"] + served["food-review-2"] > 0, served
    after = load.answered_by(since=routed)
    assert after[MODEL] > 0 and not after["food-review-1"] + after["food-review-2"], after
