"""`infergate migrate run` (the CLI) on `infergate up` under load: the page it serves shows the
migration as it happens (step, split, gates, decision) beside the cluster's status, and the
terminal shows the split and the gates. Set INFERGATE_SCREENSHOTS=docs/img to refresh
docs/img/dashboard-migration.png."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from tests.dashboard.browser import Browser, chromium_path
from tests.dashboard.test_dashboard_serve import screenshot_path
from tests.migrate.test_up import REPO, running_up, serve_gateway, sim_manifest, up_load

from infergate.util.net import free_port

# exclusive: its gates (p99 TTFT against the baseline) are measured under load; alone they measure the system.
# --fast (one probe window per step, no bake time: the production mode's bake is asserted by
# tests/migrate/test_up.py): the 50 % split stays on the page for ~3 s (the analysis delay and a probe
# window), six polls of a page that polls every 0.5 s (?poll=0.5), long enough to show a split with
# the gate results of the 0 % step. A bake of 6 s per step took 16 s more of `make test`'s exclusive pass.
pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.exclusive, pytest.mark.xdist_group("migrate-up-dashboard"),
              pytest.mark.timeout(900)]


async def test_the_migration_as_it_happens(tmp_path: Path) -> None:
    chromium_path()
    with running_up(tmp_path) as up:
        listen = free_port()
        up.sh("kubectl apply -f config/crd/preview.yaml")
        up.sh(f"kubectl apply -f - <<'EOF'\n{sim_manifest()}EOF\n")
        up.sh("helm install vllm-llama3-8b-instruct-preview --set inferencePool.modelServers.matchLabels.app="
              "vllm-llama3-8b-instruct --set inferencePool.apiVersion=inference.networking.x-k8s.io/v1alpha2 "
              "charts/inferencepool")
        up.sh("kubectl apply -f examples/demo/preview/models.yaml -f examples/demo/routes/preview.yaml")
        address = serve_gateway(up, listen, 120)
        port = free_port()
        stderr = tmp_path / "migrate.stderr"
        load = up_load(f"http://{address()}:{listen}", rate=20)
        # --p99-ttft-factor 100: the latency gate is not asserted here (test_gates.py tests it): on 2
        # shared cores the p99 of a few dozen probes moved 5x during a migration
        with load.in_thread(warmup_s=1, join_s=120):
            migrate = subprocess.Popen(
                ["infergate", "migrate", "run", "-n", "default", "--chart", "charts/inferencepool", "--chart-version",
                 "", "--probes", "40", "--p99-ttft-factor", "100", "--ready-timeout", "90", "--fast",
                 "--dashboard-port", str(port)], cwd=REPO, env={**up.env, "COLUMNS": "120"}, stdout=subprocess.PIPE,
                stderr=stderr.open("w"), text=True)
            try:
                url = f"http://127.0.0.1:{port}/dashboard/"
                deadline = time.monotonic() + 60
                while f"dashboard: {url}" not in stderr.read_text():
                    assert migrate.poll() is None and time.monotonic() < deadline, stderr.read_text()
                    time.sleep(0.2)
                async with Browser(tmp_path / "chromium") as browser:
                    await browser.goto(url + "?poll=0.5")
                    await browser.wait_for("!document.getElementById('migration').hidden", timeout=120,
                                           what="the migration panel")
                    await browser.wait_for(
                        "(() => { const w = parseInt(document.getElementById('ga-weight').textContent);"
                        " return w > 0 && w < 100 && document.querySelectorAll('#gates tbody tr').length > 0"
                        " && document.querySelectorAll('[data-pool]').length === 2; })()",
                        timeout=400, what="a split between the pools, with gate results")
                    assert (await browser.evaluate("document.getElementById('migration-route').textContent")
                            == "namespace default")
                    step = await browser.evaluate("document.getElementById('migration-step').textContent")
                    assert step and step != "–"
                    preview = await browser.evaluate("parseInt(document.getElementById('preview-weight').textContent)")
                    ga = await browser.evaluate("parseInt(document.getElementById('ga-weight').textContent)")
                    assert preview + ga == 100
                    assert await browser.evaluate("document.getElementById('split-ga').style.width") == f"{ga}%"
                    gates = await browser.evaluate(
                        "[...document.querySelectorAll('#gates tbody tr')].map(r => r.cells[1].textContent)")
                    assert set(gates) <= {"pass", "fail", "paused"}
                    decision = await browser.evaluate("document.getElementById('migration-decision').textContent")
                    assert decision in ("advance", "running")
                    # for the picture only: the status catching up (a sample is ~3 s); bounded short, as the
                    # migration may be past the split already (then the route has one backend and this
                    # wait would run out: 15 s of it cost 15 s of `make test`)
                    with contextlib.suppress(AssertionError):
                        await browser.wait_for("document.querySelectorAll('#routes .backend').length === 2",
                                               timeout=4)
                    await browser.screenshot(screenshot_path(tmp_path, "dashboard-migration.png"))
                out, _ = migrate.communicate(timeout=600)
            finally:
                if migrate.poll() is None:
                    migrate.kill()
                    migrate.wait(10)
    err = stderr.read_text()
    assert migrate.returncode == 0, f"stdout: {out[-3000:]}\nstderr: {err[-3000:]}"  # a string: shown whole
    assert "done:" in out
    assert "% GA" in err and "gates at" in err and "decision: advance" in err and "decision: done" in err
