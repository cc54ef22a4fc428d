"""`infergate migrate run --dry-run` on a cluster that has only the preview CRDs.

Its own module, so that it gets its own API server (module-scoped fixture) on which no
earlier migration installed the GA CRDs: a dry run installs no CRD, so objects of the GA
kinds cannot be dry-run applied by the server and are validated by infergate.api instead.
"""

from __future__ import annotations

import json
from typing import Any

from infergate.migrate.resources import CONFIGMAPS, CRDS, GA_POOLS, OBJECTIVES, PREVIEW_POOLS

PREVIEW, GA = "vllm-llama3-8b-instruct-preview", "vllm-llama3-8b-instruct-ga"


def run(migrate: Any, ns: str, *args: str) -> tuple[int, dict[str, Any]]:
    result = migrate("run", "-n", ns, "-o", "json", "--ready-timeout", "3", "--analysis-delay", "0", *args)
    return result.returncode, json.loads(result.stdout)


def test_dry_run_without_the_ga_crds_changes_nothing(migrate: Any, cluster: Any, preview_stack: str,
                                                     status_writer: Any) -> None:
    ns = preview_stack
    assert cluster.get(CRDS, None, GA_POOLS.qualified) is None  # the case this module exists for
    for path in ("simple", "zero-downtime"):
        code, report = run(migrate, ns, "--path", path, "--probes", "0", "--dry-run")
        assert code == 0, report
        assert report["phase"] == "dry-run"
        assert cluster.get(PREVIEW_POOLS, ns, PREVIEW) is not None
        assert cluster.get(GA_POOLS, ns, GA) is None
        assert cluster.get(CONFIGMAPS, ns, "infergate-migration-llm-route") is None
    for crd in (GA_POOLS.qualified, OBJECTIVES.qualified):
        assert cluster.get(CRDS, None, crd) is None, crd
