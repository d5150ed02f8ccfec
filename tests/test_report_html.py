"""The HTML report page (`axiomrl report --html`) opened in a real headless Chromium with the
network off: no console errors, the tables and the plots are in the DOM, run links resolve."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_runs import write_run

selenium = pytest.importorskip("selenium", reason="the browser test needs selenium (pip install 'axiomrl[dev]')")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="the browser test needs Debian's chromium and chromium-driver (.ci/run installs them)"
)


def _runs(root: Path) -> None:
    for algo, base in (("ppo", 450.0), ("dqn", 300.0)):
        for seed in range(1, 4):
            for env_id, offset in (("CartPole-v1", 0.0), ("Acrobot-v1", -600.0)):
                v = base + offset + 10 * seed
                write_run(root, algo, env_id, seed, train=[(i * 1000, v - 50 + i) for i in range(60)])
    write_run(root, "ppo", "CartPole-v1", 9, train=[(1000, 20.0)], status="failed")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    _runs(root)
    out = root / "site" / "report.html"
    proc = subprocess.run([sys.executable, "-m", "axiomrl_utils.commands.cli", "report", str(root), "--html", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):  # any request would fail
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_network_conditions(offline=True, latency=0, download_throughput=0, upload_throughput=0)
    yield driver
    driver.quit()


def test_page_is_self_contained(page):
    import re

    html = page.read_text()
    assert re.findall(r"<script[^>]*\ssrc=", html) == [] and re.findall(r"<link[^>]*href=", html) == []


def test_page_loads_offline_with_tables_and_plots(page, browser):
    browser.get(page.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert browser.execute_script("return typeof Plotly") == "object"
    # plotly rendered the figures: each has an svg with drawn traces
    plots = browser.execute_script("return document.querySelectorAll('.js-plotly-plot .main-svg').length")
    assert plots >= 3
    traces = browser.execute_script("return document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length")
    assert traces > 0
    text = {t: browser.execute_script(f"return document.getElementById('{t}').innerText")
            for t in ("leaderboard", "aggregates", "improvements", "runs")}
    assert "CartPole-v1" in text["leaderboard"] and "IQM" in text["aggregates"]
    assert "ppo" in text["improvements"] and "dqn" in text["improvements"]
    rows = browser.execute_script("return document.querySelectorAll('#runs tbody tr').length")
    assert rows == 13 and "failed" in text["runs"]
    assert "python axiomrl/ppo.py --env-id CartPole-v1 --seed 1" in text["runs"]
    # each run links to its directory, relative to the page
    hrefs = browser.execute_script("return Array.from(document.querySelectorAll('#runs a')).map(a => a.href)")
    assert len(hrefs) == 13
    for href in hrefs:
        assert href.startswith("file://") and os.path.isfile(os.path.join(href[len("file://"):], "metadata.json"))
