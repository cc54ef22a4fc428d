"""An immutable snapshot of every resource the gateway controller reads.

Providers (a manifest directory, the Kubernetes API) produce snapshots; the translator is a
pure function of a snapshot. Objects are indexed by (group, kind) and then by
(namespace, name), so lookups are O(1) and iteration is in a stable (sorted) order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from infergate.controller.resources import KINDS, ObservedObject

_Index = Mapping[tuple[str, str], Mapping[tuple[str, str], ObservedObject]]


@dataclass(frozen=True)
class Snapshot:
    """Resources by kind. Build with ``Snapshot.of(objects)``; unknown kinds are ignored."""

    _index: _Index = field(default_factory=lambda: MappingProxyType({}))
    ignored: tuple[str, ...] = ()  # "Kind.group ns/name" of objects of kinds the controller does not read

    @classmethod
    def of(cls, objects: Iterable[Mapping[str, Any] | ObservedObject]) -> Snapshot:
        index: dict[tuple[str, str], dict[tuple[str, str], ObservedObject]] = {}
        ignored: list[str] = []
        for obj in objects:
            resource = obj if isinstance(obj, ObservedObject) else ObservedObject.from_dict(obj)
            gk = (resource.group, resource.kind)
            if gk not in KINDS:
                ignored.append(str(resource.ref))
                continue
            index.setdefault(gk, {})[(resource.namespace, resource.name)] = resource
        frozen = {
            gk: MappingProxyType(dict(sorted(items.items()))) for gk, items in sorted(index.items())
        }
        return cls(MappingProxyType(frozen), tuple(sorted(ignored)))

    def list(self, group: str, kind: str, namespace: str | None = None) -> tuple[ObservedObject, ...]:
        items = self._index.get((group, kind), {})
        if namespace is None:
            return tuple(items.values())
        return tuple(r for (ns, _), r in items.items() if ns == namespace)

    def get(self, group: str, kind: str, namespace: str, name: str) -> ObservedObject | None:
        return self._index.get((group, kind), {}).get((namespace, name))

    def all(self) -> tuple[ObservedObject, ...]:
        return tuple(r for items in self._index.values() for r in items.values())

    def __len__(self) -> int:
        return sum(len(items) for items in self._index.values())
