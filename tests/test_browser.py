"""End to end in a real browser: JupyterLab + the walkthrough + the live dashboard.

Debian's chromium driven by Playwright (its own browser download cannot work offline).
Screenshots land in artifacts/browser/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts" / "browser"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _requirements() -> None:
    missing = [what for what, ok in (("chromium (apt-get install chromium)", CHROMIUM.exists()),) if not ok]
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test needs {', '.join(missing)}; .ci/run installs them")
        pytest.skip(f"browser test needs {', '.join(missing)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(base: str, token: str, path: str, method: str = "GET") -> object:
    req = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        body = resp.read()
    return json.loads(body) if body else None


@pytest.fixture
def jupyter(tmp_path):
    _requirements()
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    nb = nbformat.read(ROOT / "notebooks" / "01_walkthrough.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = re.sub(r"^steps = \d+", "steps = 4000", params.source, flags=re.M)  # long enough to steer
    params.source = re.sub(r"^out_dir = .*$", f"out_dir = {str(work / 'runs')!r}", params.source, flags=re.M)
    nbformat.write(nb, work / "01_walkthrough.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "OMP_NUM_THREADS": "1"}
    env.pop("DYNTIE_HEADLESS", None)  # a person is watching this one: the live dashboard must appear
    cmd = [str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser", "--allow-root",
           "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(tmp_path / "jupyter.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _api(base, token, "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    log_text = (tmp_path / "jupyter.log").read_text()[-2000:]
                    raise RuntimeError(f"JupyterLab did not start: {log_text}") from None
                time.sleep(0.5)
        yield base, token
    finally:
        try:
            for kernel in _api(base, token, "/api/kernels") or []:  # type: ignore[union-attr]
                _api(base, token, f"/api/kernels/{kernel['id']}", method="DELETE")
        except OSError:
            pass
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


def _count(page) -> int:
    return int(page.locator(".dyntie-step-count").first.inner_text())


HEATMAP_IMAGE = ".dyntie-dashboard .js-plotly-plot .hm image"


def _heatmap_image(page) -> str:
    image = page.locator(HEATMAP_IMAGE).first
    return image.get_attribute("href") or image.get_attribute("xlink:href") or ""


def _poll(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_walkthrough_dashboard_in_jupyterlab(jupyter):
    from playwright.sync_api import sync_playwright

    base, token = jupyter
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        try:
            page.goto(f"{base}/lab/tree/01_walkthrough.ipynb?token={token}", timeout=60_000)
            page.get_by_text("Python 3 (ipykernel) | Idle").first.wait_for(timeout=90_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.locator(".dyntie-dashboard .js-plotly-plot .hm").first.wait_for(timeout=120_000)
            _poll(lambda: _count(page) > 0, 120, "training to start")
            page.locator(".dyntie-dashboard").scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "1-training.png"))
            assert page.get_by_text("Loading widget").count() == 0

            # plotly draws the heatmap's image once its first row arrives. In CI it was once (2026-12-04) not there
            # within the 30 s an attribute read waits, and once (2026-12-05) not found within 120 s in the dashboard's
            # *first* plotly plot although the heatmap layer awaited above existed; so wait for it, in whichever plot
            # holds the heatmap, as that wait does
            page.locator(HEATMAP_IMAGE).first.wait_for(state="attached", timeout=120_000)
            first = _heatmap_image(page)
            _poll(lambda: _heatmap_image(page) != first, 90, "the tie-map heatmap to change during training")

            page.locator("button.dyntie-pause").click()
            time.sleep(1.5)
            paused_at = _count(page)
            time.sleep(2.5)
            assert _count(page) == paused_at, "steps advanced while paused"
            page.screenshot(path=str(ARTIFACTS / "2-paused.png"))
            page.locator("button.dyntie-pause").click()  # now labelled Resume
            _poll(lambda: _count(page) > paused_at, 60, "steps to advance after resume")

            page.locator("button.dyntie-pause").click()
            time.sleep(1.5)
            current = json.loads(page.locator(".dyntie-map").inner_text())
            last = len(current) - 1
            target = last if current[last] != last else 0
            before = _heatmap_image(page)
            page.locator(".dyntie-force-block select").select_option(str(last))
            page.locator(".dyntie-force-target select").select_option(str(target))
            page.locator("button.dyntie-force").click()
            _poll(lambda: json.loads(page.locator(".dyntie-map").inner_text())[last] == target, 30,
                  "the forced tie to reach the tie map")
            _poll(lambda: _heatmap_image(page) != before, 30, "the forced tie to show in the heatmap")
            page.screenshot(path=str(ARTIFACTS / "3-forced.png"))

            page.locator("button.dyntie-stop").click()
            _poll(lambda: "stopped early" in page.locator(".dyntie-status").inner_text(), 60, "the run to stop")
            page.screenshot(path=str(ARTIFACTS / "4-stopped.png"))
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "failure.png"))
            raise
        finally:
            browser.close()
