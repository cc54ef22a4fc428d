"""``infergate convert``: preview (v0.3.0) manifests -> GA (v1.0), like ``kubectl convert``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import NoReturn

import click

from infergate.cli.manifest_input import InputError, read_file, read_stdin, tolerant_output, valid_unicode

# Kept in step with infergate.api.conversion (a test checks); the CLI module stays light to import.
OUTPUT_VERSIONS = ("inference.networking.k8s.io/v1", "inference.networking.x-k8s.io/v1alpha2")
TARGET_MODELS_MODES = ("backend-refs", "rewrite-resource", "heaviest")
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


@click.command(
    name="convert",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)
@click.option(
    "-f",
    "--filename",
    "filenames",
    multiple=True,
    required=True,
    metavar="FILE|DIR|-",
    help="Manifests to convert: a YAML/JSON file, a directory of them (*.yaml, *.yml, *.json), or - for "
    "standard input. Repeatable; all inputs are converted together, so InferenceModels, pools and routes "
    "may sit in different files.",
)
@click.option("-R", "--recursive", is_flag=True, help="Read directories recursively.")
@click.option(
    "--output-version",
    type=click.Choice(OUTPUT_VERSIONS),
    default=OUTPUT_VERSIONS[0],
    show_default=True,
    help="Target API. inference.networking.x-k8s.io/v1alpha2 converts v1 InferencePools back (pools only).",
)
@click.option(
    "--pool-name-suffix",
    default="-ga",
    show_default=True,
    help='GA pool name: a trailing "-preview" is replaced by this suffix, otherwise it is appended '
    '(vllm-x-preview -> vllm-x-ga, vllm-x -> vllm-x-ga). "" keeps the names.',
)
@click.option(
    "--priorities",
    default="Critical=2,Standard=1,Sheddable=-1",
    show_default=True,
    help="InferenceObjective priority per InferenceModel criticality (Critical > Standard > Sheddable, "
    "Sheddable < 0: v1.0 sheds only negative priorities). Unset criticality counts as Standard.",
)
@click.option(
    "--target-models",
    type=click.Choice(TARGET_MODELS_MODES),
    default=TARGET_MODELS_MODES[0],
    show_default=True,
    help="InferenceModel targetModels with several models: 'backend-refs' keeps the weighted split in the "
    "HTTPRoute, one backendRef per target model to the GA pool with its weight and a RequestHeaderModifier "
    "setting x-gateway-model-name-rewrite (pure v1.0 Gateway API; the gateway must apply backendRef filters "
    "before the EPP, as infergate does); 'rewrite-resource' emits an InferenceModelRewrite (upstream v1.2+ "
    "kind, applied by the EPP); 'heaviest' sends all traffic to the heaviest target. One target is always "
    "an x-gateway-model-name-rewrite header on the model's rule.",
)
@click.option(
    "--unknown-models",
    type=click.Choice(("serve", "reject")),
    default="serve",
    show_default=True,
    help="Model names without an InferenceModel: 'serve' keeps a catch-all rule (the GA pool serves them at "
    "priority 0), 'reject' leaves them unmatched so the gateway answers 404 as the v0.3.0 EPP did.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(("yaml", "json")),
    default="yaml",
    show_default=True,
    help="Output format. JSON prints one object, or a List of several.",
)
def command(
    filenames: tuple[str, ...],
    recursive: bool,
    output_version: str,
    pool_name_suffix: str,
    priorities: str,
    target_models: str,
    unknown_models: str,
    output: str,
) -> None:
    """Convert preview inference manifests (v0.3.0) to the GA API (v1.0).

    \b
    InferencePool  inference.networking.x-k8s.io/v1alpha2 -> inference.networking.k8s.io/v1
                   (renamed with --pool-name-suffix; a missing EPP port becomes 9002)
    InferenceModel -> InferenceObjective (priority from criticality, poolRef to the GA pool)
                   + HTTPRoute rules: X-Gateway-Model-Name: <modelName> sets
                     x-gateway-inference-objective: <objective>
                   + a weighted targetModels split: one backendRef per target
                     model setting x-gateway-model-name-rewrite (--target-models)
    HTTPRoute      backendRefs to converted pools point at the GA pools
    ReferenceGrant grants for preview pools grant the GA pools
    anything else  passes through unchanged (comments and key order kept)

    Everything that cannot be kept exactly is reported on stderr as a warning naming the object
    and the field. Exit status: 0 converted, 1 invalid input (API-server-style errors on stderr),
    2 usage error.

    \b
    Examples:
      infergate convert -f examples/preview/
      kubectl get inferencepools.inference.networking.x-k8s.io,inferencemodels,httproutes -o yaml \\
        | infergate convert -f - --pool-name-suffix -v1
    """
    from infergate.api.conversion import TARGET_MODELS_MODES as LIBRARY_TARGET_MODELS_MODES
    from infergate.api.conversion import (
        ConvertOptions,
        Document,
        ManifestError,
        PriorityMap,
        convert_documents,
        read_documents,
        write_json,
        write_yaml,
    )

    tolerant_output()
    try:
        priority_map = PriorityMap.parse(priorities)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--priorities") from None
    options = ConvertOptions(
        output_version=output_version,
        pool_name_suffix=pool_name_suffix,
        priorities=priority_map,
        target_models=next(mode for mode in LIBRARY_TARGET_MODELS_MODES if mode == target_models),
        unknown_models="serve" if unknown_models == "serve" else "reject",
    )

    documents: list[Document] = []
    try:
        for source, text in _read_inputs(filenames, recursive):
            documents.extend(dataclasses.replace(doc, data=valid_unicode(doc.data))
                             for doc in read_documents(text, source))
    except ManifestError as exc:
        _fail(str(exc))
    if not any(doc.data is not None for doc in documents):
        _fail("no objects passed to convert")

    result = convert_documents(documents, options)
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    if result.errors:
        for line in result.errors:
            click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_INVALID)
    if output == "json":
        click.echo(write_json([o.obj for o in result.objects]), nl=False)
    else:
        click.echo(write_yaml((o.obj, o.text) for o in result.objects), nl=False)


def _read_inputs(filenames: tuple[str, ...], recursive: bool) -> list[tuple[str, str]]:
    inputs: list[tuple[str, str]] = []
    for name in filenames:
        if name == "-":
            try:
                inputs.append(("<stdin>", read_stdin()))
            except InputError as exc:
                raise click.BadParameter(str(exc), param_hint="-f") from None
            continue
        path = Path(name)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
            if not files:
                raise click.BadParameter(f"{name}: no {', '.join(MANIFEST_SUFFIXES)} files", param_hint="-f")
            inputs.extend((str(p), _read(p)) for p in files)
        elif path.is_file():
            inputs.append((str(path), _read(path)))
        else:
            raise click.BadParameter(f"{name}: no such file or directory", param_hint="-f")
    return inputs


def _read(path: Path) -> str:
    try:
        return read_file(path)
    except InputError as exc:
        raise click.BadParameter(str(exc), param_hint="-f") from None


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_INVALID)
