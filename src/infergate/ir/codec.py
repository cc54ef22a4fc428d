"""The IR <-> plain dicts (YAML/JSON), for golden files, the admin endpoint and debugging dumps.

Field names are the dataclass field names; missing fields take their defaults; unknown
fields are errors naming their path (``listeners[0].virtual_hosts[1].routs: unknown field``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from infergate.ir import types as ir_types
from infergate.ir.types import DataplaneConfig


class IRDecodeError(ValueError):
    pass


def ir_to_dict(value: Any) -> Any:
    """Dataclasses to dicts (fields equal to their default omitted), tuples to lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            default = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
            if default is not dataclasses.MISSING and item == default:
                continue
            out[f.name] = ir_to_dict(item)
        return out
    if isinstance(value, tuple | list):
        return [ir_to_dict(v) for v in value]
    return value


def ir_from_dict(data: dict[str, Any]) -> DataplaneConfig:
    result = _decode(DataplaneConfig, data, "")
    assert isinstance(result, DataplaneConfig)
    return result


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(ir_types))


def _decode(tp: Any, data: Any, path: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(data, dict):
            raise IRDecodeError(f"{path or '.'}: expected a mapping, got {type(data).__name__}")
        hints = _hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise IRDecodeError(f"{_join(path, unknown[0])}: unknown field")
        kwargs = {name: _decode(hints[name], value, _join(path, name)) for name, value in data.items()}
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise IRDecodeError(f"{path or '.'}: {exc}") from None
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(data, list | tuple):
            raise IRDecodeError(f"{path}: expected a list")
        return tuple(_decode(args[0], item, f"{path}[{i}]") for i, item in enumerate(data))
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _decode(options[0], data, path)
    if origin is Literal:
        if data not in get_args(tp):
            raise IRDecodeError(f"{path}: {data!r} is not one of {list(get_args(tp))}")
        return data
    if tp is float and isinstance(data, int | float) and not isinstance(data, bool):
        return float(data)
    if tp in (int, str, bool) and not isinstance(data, tp):
        raise IRDecodeError(f"{path}: expected {tp.__name__}, got {data!r}")
    return data


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
