"""A ``StatusSnapshot`` drawn with rich: one table per concern."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from infergate.status.model import PoolStatus, StatusSnapshot


def _yes(value: bool | None) -> Text:
    if value is None:
        return Text("-", style="dim")
    return Text("True", style="green") if value else Text("False", style="bold red")


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms"


def _gateways(snapshot: StatusSnapshot) -> Table:
    table = Table(title="Gateways", title_justify="left", expand=False)
    for column in ("NAMESPACE/NAME", "CLASS", "ADDRESS", "PROGRAMMED", "LISTENERS"):
        table.add_column(column)
    for gw in snapshot.gateways:
        programmed = _yes(gw.programmed)
        if gw.programmed is False:
            programmed.append(f" {gw.programmed_reason}: {gw.programmed_message}", style="red")
        table.add_row(f"{gw.namespace}/{gw.name}", gw.gateway_class, ", ".join(gw.addresses) or "-", programmed,
                      ", ".join(gw.listeners))
    return table


def _routes(snapshot: StatusSnapshot) -> Table:
    table = Table(title="HTTPRoutes", title_justify="left")
    for column in ("NAMESPACE/NAME", "PARENTS", "ACCEPTED", "RESOLVED", "MATCH", "BACKENDS (weight, share)"):
        table.add_column(column)
    for route in snapshot.routes:
        for i, rule in enumerate(route.rules or []):
            backends = ", ".join(f"{b.kind} {b.name} ({b.weight}, {b.share * 100:.0f}%)" for b in rule.backends)
            first = i == 0
            table.add_row(f"{route.namespace}/{route.name}" if first else "", ", ".join(route.parents) if first else "",
                          _yes(route.accepted) if first else "", _yes(route.resolved_refs) if first else "",
                          "; ".join(rule.matches), backends or "-")
    return table


def _pools(snapshot: StatusSnapshot) -> Table:
    table = Table(title="InferencePools", title_justify="left")
    for column in ("NAMESPACE/NAME", "API", "EPP", "FAILURE MODE", "ACCEPTED", "ENDPOINTS", "REQ/S", "ERR/S",
                   "HELD", "LATENCY p50/p90", "TTFT p50/p90", "OBJECTIVES (priority)"):
        table.add_column(column)
    for pool in snapshot.pools:
        t = pool.traffic
        ready = sum(e.ready for e in pool.endpoints)
        if not pool.epp:
            epp = Text("none (gateway)")  # GIE v1.6: a pool without endpointPickerRef
        elif pool.epp_reachable:
            epp = Text(pool.epp)
        else:
            epp = Text(f"{pool.epp} (metrics unreachable)", style="red")
        objectives = ", ".join(f"{o.name} ({o.priority if o.priority is not None else '-'})" for o in pool.objectives)
        if pool.models:
            objectives = ", ".join(filter(None, [objectives, *(f"{md.model_name} [{md.criticality or '-'}]"
                                                              for md in pool.models)]))
        table.add_row(
            f"{pool.namespace}/{pool.name}", pool.generation, epp, pool.failure_mode, _yes(pool.accepted),
            f"{ready}/{len(pool.endpoints)} ready",
            _num(t.requests_per_s if t else None, "{:.1f}"), _num(t.errors_per_s if t else None, "{:.1f}"),
            _num(t.held_in_epp if t else None, "{:.0f}"),
            f"{_ms(t.latency_p50_s if t else None)} / {_ms(t.latency_p90_s if t else None)}",
            f"{_ms(t.ttft_p50_s if t else None)} / {_ms(t.ttft_p90_s if t else None)}",
            objectives or "-")
    return table


def _endpoints(pool: PoolStatus) -> Table:
    table = Table(title=f"Endpoints of {pool.namespace}/{pool.name}", title_justify="left")
    for column in ("POD", "ADDRESS", "READY", "REQ/S", "ERR/S", "QUEUE", "RUNNING", "KV CACHE", "PREFIX HITS",
                   "TTFT p50", "LORA (running/waiting)"):
        table.add_column(column)
    for e in pool.endpoints:
        rate = _rate(e.requests_per_s, e.requests_source)
        if not e.reachable:
            table.add_row(e.name, f"{e.address}:{e.port}", _yes(e.ready), rate, _num(e.errors_per_s, "{:.1f}"),
                          Text(f"metrics: {e.error}", style="red"))
            continue
        lora = ",".join(e.lora_running) or "-"
        if e.lora_waiting:
            lora += " / " + ",".join(e.lora_waiting)
        table.add_row(e.name, f"{e.address}:{e.port}", _yes(e.ready), rate, _num(e.errors_per_s, "{:.1f}"),
                      _num(e.queue), _num(e.running), _pct(e.kv_cache), _pct(e.prefix_cache_hit_rate),
                      _ms(e.ttft_p50_s), lora)
    return table


def _rate(value: float | None, source: str | None) -> Text:
    """An endpoint's request rate; marked when it is the model server's count (all its traffic)."""
    text = Text(_num(value, "{:.1f}"))
    if value is not None and source == "model server":
        text.append(" (server)", style="dim")
    return text


def render(snapshot: StatusSnapshot) -> Group:
    parts: list[Table | Text] = [
        Text(f"{snapshot.source} - {snapshot.taken_at} (rates over {snapshot.sample_interval_s:g}s)", style="dim"),
        _gateways(snapshot), _routes(snapshot), _pools(snapshot),
    ]
    parts.extend(_endpoints(pool) for pool in snapshot.pools)
    parts.extend(Text(error, style="yellow") for error in snapshot.errors)
    return Group(*parts)
