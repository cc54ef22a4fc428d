"""``infergate validate``: validate manifests as the API server would (strict field validation).

Exit status: 0 when every document is valid, 1 when one is invalid (or does not parse),
2 on a usage error (missing file, bad option).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import yaml

from infergate.api import registry, yamlload
from infergate.api.errors import FieldError, ValidationFailed
from infergate.api.objects import validate as validate_object
from infergate.cli.manifest_input import InputError, read_file, read_stdin, tolerant_output, valid_unicode

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class ManifestObject:
    """One object of a manifest file (each item of a ``List`` is one), with where it was read."""

    source: str  # file path or "-"
    index: int  # 1-based position in the file
    value: Any

    @property
    def where(self) -> str:
        return f"{self.source}#{self.index}"


def _files(target: str, recursive: bool) -> list[Path]:
    path = Path(target)
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
    return [path]


def _objects(source: str, text: str) -> Iterator[ManifestObject]:
    for i, value in enumerate(valid_unicode(yamlload.load_all(text)), start=1):
        if value is None:
            continue
        if isinstance(value, dict) and value.get("kind") == "List" and isinstance(value.get("items"), list):
            for item in value["items"]:
                yield ManifestObject(source, i, item)
        else:
            yield ManifestObject(source, i, value)


def _describe(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "document"
    kind = str(doc.get("kind") or "?")
    api_version = str(doc.get("apiVersion") or "")
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    qualified = f"{kind}.{group}" if group else kind
    return f'{qualified} "{name or ""}"'


_OWN_GROUPS = {t.group for t in registry.all_types() if t.group}


def is_foreign(value: Any) -> bool:
    """A kind infergate does not model (a Deployment, a ConfigMap...): skipped, not invalid.

    Unknown kinds or versions in infergate's own API groups (a typo such as
    ``InferencePol``) are errors.
    """
    if not isinstance(value, dict):
        return False
    api_version, kind = value.get("apiVersion"), value.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return False
    group = api_version.split("/", 1)[0] if "/" in api_version else ""
    if group in _OWN_GROUPS:
        return False
    return not registry.by_kind(kind) or all(t.group != group for t in registry.by_kind(kind))


def validate_document(doc: ManifestObject, release: str | None) -> list[FieldError]:
    return validate_object(doc.value, release=release)


def _read(reader: Callable[[Any], str], arg: Any) -> str | InputError:
    """The text, or the ``InputError`` error to report as an invalid source."""
    try:
        return reader(arg)
    except InputError as exc:
        return exc


def _failure(doc: ManifestObject, errors: list[FieldError]) -> ValidationFailed:
    value = doc.value if isinstance(doc.value, dict) else {}
    t = registry.by_gvk(str(value.get("apiVersion") or ""), str(value.get("kind") or ""))
    meta = value.get("metadata")
    return ValidationFailed(
        kind=t.kind if t else str(value.get("kind") or ""),
        name=str(meta.get("name") or "") if isinstance(meta, dict) else "",
        errors=errors,
        group=t.group if t else "",
    )


def _header(failed: ValidationFailed) -> str:
    """The first line: the API server's message without the error list."""
    if failed.is_strict_decoding:
        return f'{failed.qualified_kind} "{failed.name}": strict decoding error:'
    return f'{failed.qualified_kind} "{failed.name}" is invalid:'


@click.command("validate")
@click.option(
    "-f",
    "--filename",
    "targets",
    multiple=True,
    required=True,
    help="A manifest file, a directory of them (*.yaml, *.yml, *.json) or - for stdin; repeatable.",
)
@click.option("-R", "--recursive", is_flag=True, help="Descend into sub-directories of a directory.")
@click.option(
    "--release",
    type=click.Choice([registry.RELEASE_GIE_V0_3, registry.RELEASE_GIE_V1_0, registry.RELEASE_GIE_V1_5,
                       registry.RELEASE_GIE_V1_6]),
    default=None,
    help="Which GIE release's CRDs to validate against where releases differ: the x-k8s.io InferencePool "
    "(v0.3.0 or v1.0.0: the status) and the v1 InferencePool (v1.0.0: one target port and a required "
    "endpointPickerRef; v1.6.0: up to 8 ports, appProtocol). Default: valid if any release accepts it.",
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the errors.")
def command(targets: tuple[str, ...], recursive: bool, release: str | None, quiet: bool) -> None:
    """Validate Kubernetes manifests (multi-document YAML) against infergate's types.

    Prints the API server's error lines for each invalid object: the Invalid message
    (``InferencePool.inference.networking.k8s.io "x" is invalid: ...``) followed by one
    line per field error.
    """
    tolerant_output()
    sources: list[tuple[str, str | InputError]] = []
    for target in targets:
        if target == "-":
            sources.append(("-", _read(read_stdin, "-")))
            continue
        path = Path(target)
        if not path.exists():
            raise click.BadParameter(f"{target}: no such file or directory", param_hint="-f")
        files = _files(target, recursive)
        if path.is_dir() and not files:
            raise click.BadParameter(
                f"{target}: no manifests (*.yaml, *.yml, *.json) in directory", param_hint="-f"
            )
        for f in files:
            sources.append((str(f), _read(read_file, f)))

    invalid = 0
    checked = 0
    skipped = 0
    for source, text in sources:
        if isinstance(text, InputError):
            invalid += 1
            click.echo(f"error reading {text}")
            continue
        try:
            docs = list(_objects(source, text))
        except yaml.YAMLError as exc:
            invalid += 1
            click.echo(f"{source}: error parsing YAML: {yamlload.one_line(exc)}")
            continue
        for doc in docs:
            if is_foreign(doc.value):
                skipped += 1
                if not quiet:
                    click.echo(
                        f"{doc.where}: {_describe(doc.value)} skipped (kind not modelled by infergate)"
                    )
                continue
            checked += 1
            errors = validate_document(doc, release)
            if errors:
                invalid += 1
                click.echo(f"{doc.where}: {_header(_failure(doc, errors))}")
                for error in errors:
                    click.echo(f"  {error}")
            elif not quiet:
                click.echo(f"{doc.where}: {_describe(doc.value)} valid")
    if not quiet or invalid:
        click.echo(f"{checked} object(s) checked, {invalid} invalid, {skipped} skipped", err=True)
    if invalid:
        sys.exit(1)
