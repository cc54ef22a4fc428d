"""Messages that say what was looked at (issue 17 defects 6 and 7): `check -f` with no cluster
configured scans the files and says no cluster was scanned; `check -n` names its namespace and
the others that have preview objects; `plan`/`run` errors name the namespace; output to a pipe
is not wrapped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from infergate.cli.migrate import command

TESTDATA = Path(__file__).resolve().parent / "testdata"
REPO = Path(__file__).resolve().parents[2]


def without_cluster(tmp_path: Path, *args: str) -> Any:
    """`infergate migrate ARGS` where no kubeconfig exists (a CI job with only the manifests)."""
    env = {"KUBECONFIG": str(tmp_path / "no-such-kubeconfig"), "HOME": str(tmp_path)}
    return CliRunner(env=env).invoke(command, list(args), catch_exceptions=False)


def test_check_files_without_a_kubeconfig_scans_the_files_and_says_no_cluster_was_scanned(tmp_path: Path) -> None:
    result = without_cluster(tmp_path, "check", "-f", str(TESTDATA / "preview-stack.yaml"))
    assert result.exit_code == 3, result.output
    assert "no cluster was scanned" in result.stdout and "cannot load kubeconfig" in result.stdout
    assert "InferencePool" in result.stdout
    as_json = without_cluster(tmp_path, "check", "-f", str(TESTDATA / "preview-stack.yaml"), "-o", "json")
    data = json.loads(as_json.stdout)
    assert as_json.exit_code == 3 and data["clusterScanned"] is False
    assert any("no cluster was scanned" in n for n in data["notes"])
    clean = tmp_path / "ga.yaml"
    clean.write_text((REPO / "config" / "crd" / "gateway-api.yaml").read_text())
    assert without_cluster(tmp_path, "check", "-f", str(clean)).exit_code == 0
    # without -f there is nothing to scan: the missing kubeconfig is an error, as before
    alone = without_cluster(tmp_path, "check")
    assert alone.exit_code == 1 and "cannot load kubeconfig" in alone.output
    # in one line, the path once, no exception class: as `infergate status` and `infergate epp` say it
    missing = tmp_path / "no-such-kubeconfig"
    assert f"Error: cannot load kubeconfig {missing}: No such file or directory\n" in alone.output, alone.output


def test_infergate_status_says_why_the_kubeconfig_cannot_be_loaded_in_one_line(tmp_path: Path) -> None:
    from infergate.cli import main as cli

    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    result = CliRunner().invoke(cli, ["status", "--kubeconfig", str(config)])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot load kubeconfig {config}: no current-context and no context given\n"


def test_check_in_one_namespace_says_so_and_names_the_others_with_preview_objects(
        migrate: Any, preview_stack: str, namespace: str, cluster: Any) -> None:
    from infergate.migrate.resources import NAMESPACES

    empty = f"{namespace}-empty"
    cluster.apply(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": empty}})
    result = migrate("check", "-n", empty, "--no-helm")
    assert result.returncode == 0, result.out
    assert f"no preview objects in namespace {empty}: nothing to migrate" in result.stdout
    assert f"looked only at namespace {empty} (-A for every namespace)" in result.stdout
    assert f"{preview_stack} (3)" in result.stdout  # its InferencePool and two InferenceModels


def test_plan_and_run_errors_name_the_namespace(migrate: Any, preview_stack: str, namespace: str, cluster: Any) -> None:
    from infergate.migrate.resources import NAMESPACES

    empty = f"{namespace}-none"
    cluster.apply(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": empty}})
    for sub in ("plan", "run"):
        result = migrate(sub, "-n", empty)
        assert result.returncode == 1, result.out
        assert f"namespace {empty}: no HTTPRoute sends traffic" in result.stderr, result.stderr
        assert preview_stack in result.stderr  # where preview objects are
    missing = migrate("plan", "-n", preview_stack, "--route", "nope")
    assert f"namespace {preview_stack}: HTTPRoute nope not found" in missing.stderr


def test_piped_output_is_not_wrapped(migrate: Any, preview_stack: str) -> None:
    plan = json.loads(migrate("plan", "-n", preview_stack, "-o", "json").stdout)
    longest = max((s["manual"] for s in plan["steps"]), key=len)
    assert len(longest) > 100, longest
    table = migrate("plan", "-n", preview_stack).stdout
    assert longest in table, "a step's manual command was folded over several lines"


def test_plan_prints_the_run_command_with_the_same_flags_the_manual_waits_and_the_deliberate_differences(
        migrate: Any, preview_stack: str) -> None:
    ns = preview_stack
    out = migrate("plan", "-n", ns, "--steps", "0,25,100", "--chart-version", "", "--no-attribution").stdout
    assert f"`infergate migrate run -n {ns} --steps 0,25,100 --chart-version '' --no-attribution` does exactly " \
           "these steps" in out, out
    ga_epp = "vllm-llama3-8b-instruct-ga-epp"
    assert f"kubectl rollout status -n {ns} deployment/{ga_epp} --timeout=2m" in out
    assert f"kubectl wait -n {ns} --for=condition=Available deployment/{ga_epp}" in out
    assert "the source document has no wait" in out
    assert "on purpose, unlike the source document (which gives every InferenceObjective priority 2)" in out
    assert "base-model=2, food-review=1" in out


def test_infergate_status_of_an_unreachable_api_server_says_so_once_and_leaves_nothing_open(tmp_path: Path) -> None:
    import subprocess
    import sys

    from infergate.util.net import free_port

    port = free_port()  # nothing listens there
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n")
    result = subprocess.run([sys.executable, "-m", "infergate", "status", "--kubeconfig", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    (line,) = result.stderr.strip().splitlines()  # one line: no "Unclosed client session" after it
    assert line.startswith("Error: GET /apis/gateway.networking.k8s.io/v1/gateways: Cannot connect to host "), line
    assert line.count("GET ") == 1, line  # the call once, not twice


def test_migrate_check_against_a_cluster_leaves_no_client_open(apiserver: Any) -> None:
    """Before: every `infergate migrate check` that scanned a cluster ended with aiohttp's
    "Unclosed connector" on stderr (its client was never closed)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "infergate", "migrate", "check", "--no-helm",
                             "--kubeconfig", str(apiserver.kubeconfig_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 3), result
    assert "Unclosed" not in result.stderr, result.stderr


def _unreachable_kubeconfig(tmp_path: Path) -> Path:
    from infergate.util.net import free_port

    config = tmp_path / "unreachable-kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:{free_port()}', insecure-skip-tls-verify: true}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n")
    return config


@pytest.mark.parametrize("args", [["plan"], ["run", "--fast"], ["verify", "--route", "r"], ["cleanup"], ["status"]])
def test_an_unreachable_api_server_is_one_line_naming_the_call(tmp_path: Path, args: list[str]) -> None:
    """Before: these five let the client's ConnectionFailed out as a ~100-line traceback."""
    result = CliRunner().invoke(command, [*args, "--kubeconfig", str(_unreachable_kubeconfig(tmp_path))])
    assert result.exit_code == 1, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert line.startswith(("Error: GET /api", "Error: PATCH /api")) and "Cannot connect to host 127.0.0.1:" in line, line
    assert "Traceback" not in result.output


def test_steps_errors_name_the_flag_once(apiserver: Any) -> None:
    result = CliRunner().invoke(command, ["plan", "--steps", "50,0", "--kubeconfig", str(apiserver.kubeconfig_path)])
    assert result.exit_code == 2
    assert "Error: Invalid value for --steps: weights must increase strictly: [50, 0]" in result.output


async def test_a_request_without_an_answer_says_how_long_it_waited() -> None:
    """Before: "GET /path: TimeoutError" (the exception's class: its text is empty)."""
    import asyncio

    from infergate.kube.client import KubeClient
    from infergate.kube.config import KubeConfig
    from infergate.kube.errors import ConnectionFailed

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with KubeClient(KubeConfig(server=f"http://127.0.0.1:{port}"), request_timeout=0.3) as client:
            with pytest.raises(ConnectionFailed) as failed:
                await client.get("/api/v1/namespaces")
    finally:
        server.close()
    assert str(failed.value) == "GET /api/v1/namespaces: no answer within 0.3s"


@pytest.mark.parametrize(("args", "message"), [
    (["plan", "--probes", "-1"], "Invalid value for '--probes': -1 is not in the range x>=0."),
    (["plan", "--min-success-rate", "2"], "Invalid value for '--min-success-rate': 2.0 is not in the range 0.0<=x<=1.0."),
    (["plan", "--p99-ttft-factor", "0"], "Invalid value for '--p99-ttft-factor': 0.0 is not in the range x>0.0."),
    (["run", "--analysis-delay", "-1"], "Invalid value for '--analysis-delay': -1.0 is not in the range x>=0.0."),
    (["run", "--ready-timeout", "-5"], "Invalid value for '--ready-timeout': -5.0 is not in the range x>0.0."),
    (["run", "--min-requests", "-1"], "Invalid value for '--min-requests': -1 is not in the range x>=0."),
    (["verify", "--requests", "-3"], "Invalid value for '--requests': -3 is not in the range x>=0."),
    (["llm-d", "--probes", "-1"], "Invalid value for '--probes': -1 is not in the range x>=0."),
])
def test_gate_values_out_of_range_are_usage_errors(args: list[str], message: str) -> None:
    """Before: accepted and echoed in the plan ("success rate >= 2.0 ... -1 probes per window")."""
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2 and message in result.output, result.output
