"""The least-privilege RBAC of a GA EPP that the migration creates in objects mode.

The GA EPP copied from the preview EPP (``plan.ga_epp_objects``) cannot keep the preview
EPP's ServiceAccount: whatever RBAC that one has was written for the preview group
(``inferencepools``/``inferencemodels`` in ``inference.networking.x-k8s.io``). It gets what
``charts/inferencepool/templates/rbac.yaml`` creates for a GA pool instead: a ServiceAccount,
a Role and a RoleBinding, all named like the EPP, in the pool's namespace.

:data:`GA_EPP_RULES` is the one copy of the Role's rules in this package;
``tests/migrate/test_epp_rbac.py`` compares it with what ``helm template`` renders from the
chart, so the two cannot drift apart.
"""

from __future__ import annotations

import copy
from typing import Final

from infergate.api.conversion.constants import GA_GROUP, PREVIEW_GROUP
from infergate.migrate.resources import ROLE_BINDINGS, ROLES, SERVICE_ACCOUNTS, Obj

READ: Final = ("get", "list", "watch")

# (apiGroups, resources, verbs), in the chart's order: the EPP reads its pool (GA group), the
# InferenceObjectives, and the model-server pods.
GA_EPP_RULES: Final[tuple[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...]] = (
    ((GA_GROUP,), ("inferencepools",), READ),
    ((PREVIEW_GROUP,), ("inferenceobjectives", "inferencemodelrewrites"), READ),
    (("llm-d.ai",), ("inferenceobjectives", "inferencemodelrewrites"), READ),  # the llm-d router's group
    (("",), ("pods",), READ),
)


def ga_epp_role_rules() -> list[Obj]:
    """:data:`GA_EPP_RULES` as a Role's ``rules``."""
    return [{"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
            for groups, resources, verbs in GA_EPP_RULES]


def ga_epp_rbac_objects(epp: str, namespace: str, labels: dict[str, str]) -> tuple[Obj, Obj, Obj]:
    """ServiceAccount, Role and RoleBinding named ``epp`` in ``namespace`` (the chart's, for a GA pool)."""

    def metadata() -> Obj:
        return {"name": epp, "namespace": namespace, "labels": copy.deepcopy(labels)}

    account = {"apiVersion": SERVICE_ACCOUNTS.api_version, "kind": SERVICE_ACCOUNTS.kind, "metadata": metadata()}
    role = {"apiVersion": ROLES.api_version, "kind": ROLES.kind, "metadata": metadata(),
            "rules": ga_epp_role_rules()}
    binding = {
        "apiVersion": ROLE_BINDINGS.api_version, "kind": ROLE_BINDINGS.kind, "metadata": metadata(),
        "subjects": [{"kind": SERVICE_ACCOUNTS.kind, "name": epp, "namespace": namespace}],
        "roleRef": {"apiGroup": ROLES.group, "kind": ROLES.kind, "name": epp},
    }
    return account, role, binding


def describe_rules() -> str:
    """The rules in one line, for the plan (``get/list/watch inferencepools.inference.networking.k8s.io, ...``)."""
    parts = []
    for groups, resources, verbs in GA_EPP_RULES:
        names = [f"{r}.{g}" if g else r for g in groups for r in resources]
        parts.append(f"{'/'.join(verbs)} {', '.join(names)}")
    return "; ".join(parts)
