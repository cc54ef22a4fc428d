"""What the migration creates, decided by what the cluster serves.

``--target-models`` (an InferenceModel whose ``targetModels`` splits traffic):

- ``route`` (= the converter's ``backend-refs``): HTTPRoute backendRefs with weights and
  ``x-gateway-model-name-rewrite`` filters (pure v1.0 Gateway API);
- ``rewrite`` (= ``rewrite-resource``): an InferenceModelRewrite the EPP applies (upstream
  v1.2+, the llm-d router); refused when the cluster serves no InferenceModelRewrite CRD;
- ``auto``: ``rewrite`` where the cluster serves an InferenceModelRewrite CRD, else ``route``;
- ``heaviest``: everything to the heaviest target.

And the group of the InferenceObjectives / InferenceModelRewrites the migration creates:
``llm-d.ai/v1alpha2`` when the llm-d.ai CRDs are installed (an EPP then reads only that group:
x-k8s objects would be ignored), else ``inference.networking.x-k8s.io/v1alpha2``.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from infergate.migrate.cluster import Cluster
from infergate.migrate.generations import LLMD_MODEL_REWRITES, LLMD_OBJECTIVES
from infergate.migrate.plan import PlanError, PlanOptions
from infergate.migrate.resources import CRDS, MODEL_REWRITES

ALIASES: Final[dict[str, str]] = {"route": "backend-refs", "rewrite": "rewrite-resource"}
CHOICES: Final = ("auto", "route", "rewrite", "backend-refs", "rewrite-resource", "heaviest")


def _installed(cluster: Cluster, name: str) -> bool:
    return cluster.get(CRDS, None, name) is not None


def resolve(cluster: Cluster, options: PlanOptions) -> PlanOptions:
    """``options`` with ``target_models`` in the converter's terms and ``llmd_objects`` set."""
    llmd = _installed(cluster, LLMD_OBJECTIVES.qualified)
    mode = options.target_models
    rewrite_crds = [n for n in (LLMD_MODEL_REWRITES.qualified, MODEL_REWRITES.qualified) if _installed(cluster, n)]
    if mode == "auto":
        mode = "rewrite-resource" if rewrite_crds else "backend-refs"
    elif mode is not None:
        mode = ALIASES.get(mode, mode)
        if mode == "rewrite-resource" and not rewrite_crds:
            raise PlanError(f"--target-models {options.target_models}: the cluster serves no InferenceModelRewrite CRD "
                            f"({LLMD_MODEL_REWRITES.qualified} or {MODEL_REWRITES.qualified}); install one (e.g. "
                            "`infergate crds --bundle llm-d | kubectl apply -f -`) or use --target-models route")
    return dataclasses.replace(options, target_models=mode, llmd_objects=llmd)
