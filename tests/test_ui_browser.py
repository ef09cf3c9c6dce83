"""`make ui` (python -m pipeline.tracking.ui) looked at in headless Chromium, as a user would.

Needs Debian's chromium and chromium-driver (.ci/run installs them). Screenshots go to
test-artifacts/ui/ (not committed).
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from tests.helpers import REPO, free_port, http_service, mlflow_client, runs_by_setting

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", shutil.which("chromedriver")
SHOTS = REPO / "test-artifacts" / "ui"
PATIENCE = 90  # seconds for a page to render on a busy 2-core machine


@pytest.fixture(scope="module")
def ui(pipeline_run):
    """The project's UI command on a free port, serving the fixture pipeline's store."""
    if not (CHROMEDRIVER and os.path.exists(CHROMIUM)):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    repo, _, _ = pipeline_run
    port = free_port()
    with http_service([sys.executable, "-m", "pipeline.tracking.ui", "--port", str(port)], port, "the UI",
                      cwd=repo, timeout=PATIENCE) as url:
        yield repo, url


@pytest.fixture(scope="module")
def browser(ui):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=2200,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, shot: str):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # the grid re-renders while its data arrive: an element found a moment ago may be gone
        return WebDriverWait(driver, PATIENCE, poll_frequency=0.5,
                             ignored_exceptions=[StaleElementReferenceException]).until(condition)
    except TimeoutException:
        driver.save_screenshot(str(SHOTS / f"{shot}-failed.png"))
        raise AssertionError(f"{what} did not appear within {PATIENCE} s (screenshot {shot}-failed.png)") from None
    finally:
        driver.save_screenshot(str(SHOTS / f"{shot}.png"))


def _text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _experiment_ids(repo) -> dict[str, str]:
    return {e.name: e.experiment_id for e in mlflow_client(repo).search_experiments()}


def test_both_experiments_are_listed(ui, browser):
    _, url = ui
    browser.get(f"{url}/#/experiments")
    _wait(browser, lambda d: "mnist-cnn" in _text(d) and "cifar10-gray-cnn" in _text(d),
          "both experiments", "experiments")


def test_the_printed_link_opens_the_runs_with_the_columns_that_matter(ui, browser):
    """What `make ui` prints: the runs table in model-training mode (not MLflow 3's GenAI
    overview, where a fresh browser profile lands), with params and metrics as columns."""
    from selenium.webdriver.common.by import By

    from pipeline.tracking.ui import runs_page

    repo, url = ui
    browser.get(runs_page(url, _experiment_ids(repo)["mnist-cnn"]))

    def columns(driver):  # textContent: the grid leaves columns scrolled out of view without text
        headers = {h.get_attribute("textContent") for h in driver.find_elements(By.XPATH, "//*[@role='columnheader']")}
        return headers if {"kernel", "strides", "l2", "test_accuracy"} <= headers else None

    _wait(browser, columns, "kernel, strides, l2 and test_accuracy columns", "runs")
    for setting in ("mnist-k3-s1", "mnist-k3-s1-l2"):  # one row per setting: its parent run
        assert len(browser.find_elements(By.XPATH, f"//a[normalize-space()='{setting}']")) == 1, setting
    assert not browser.find_elements(By.XPATH, "//a[normalize-space()='report']")  # in its own experiment
    assert "Overview" not in _text(browser) and "Token Usage" not in _text(browser)
    _wait(browser, lambda d: {"0.001", "3"} <= {c.get_attribute("textContent")
                                                for c in d.find_elements(By.XPATH, "//*[@role='gridcell']")},
          "the params' values in the cells", "runs-values")

    # the setting's row opens onto its seed runs
    seed_run = "//a[normalize-space()='mnist-k3-s1 seed 0']"
    assert not browser.find_elements(By.XPATH, seed_run)
    expander = "//a[normalize-space()='mnist-k3-s1']/ancestor::*[@role='gridcell'][1]//button"
    _wait(browser, lambda d: d.find_element(By.XPATH, expander).click() or True, "the setting's expander", "expand")
    _wait(browser, lambda d: d.find_elements(By.XPATH, seed_run), "the seed run nested under its setting", "nested")


def test_a_runs_metric_charts_load(ui, browser):
    from selenium.webdriver.common.by import By

    repo, url = ui
    run = runs_by_setting(repo)["mnist-k3-s1"]
    browser.get(f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/model-metrics")
    # one chart per metric (the page draws only the charts in view: loss is among the first)
    _wait(browser, lambda d: "loss" in _text(d) and d.find_elements(By.CSS_SELECTOR, "svg.main-svg"),
          "the metric charts", "metrics")


def test_a_figure_artifact_renders(ui, browser):
    from selenium.webdriver.common.by import By

    repo, url = ui
    run = runs_by_setting(repo)["cifar10-k3-s1"]
    browser.get(f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
                "/artifacts/figures/learning_curves.png")
    image = _wait(browser, lambda d: next((i for i in d.find_elements(By.CSS_SELECTOR, "img[src^='blob:']")
                                           if d.execute_script("return arguments[0].naturalWidth", i) > 0), None),
                  "the learning-curves PNG", "artifact")
    assert browser.execute_script("return arguments[0].naturalHeight", image) > 100


def test_make_ui_prints_its_links_once_the_server_answers_and_stops_quietly(pipeline_run):
    """The first click on a printed link must land; a SIGTERM (or Ctrl-C) is how a user stops
    a server, not a failure."""
    import signal
    import subprocess
    import threading
    import urllib.request

    from tests.helpers import project_env, seconds_left

    repo, _, _ = pipeline_run
    port = free_port()
    ui = subprocess.Popen([sys.executable, "-m", "pipeline.tracking.ui", "--port", str(port)], cwd=repo,
                          env=project_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    bound = seconds_left(PATIENCE)
    # Reading the pipe blocks: past the bound, a SIGTERM, as a user stops it, ends the read (the UI
    # stops its server, which holds the pipe open too).
    overdue = threading.Timer(bound, ui.send_signal, (signal.SIGTERM,))
    overdue.start()
    try:
        for line in ui.stderr:  # the server's own log lines come first
            if line.startswith("mnist-cnn: http://"):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                break
        else:
            raise AssertionError(f"no link printed before the UI ended or {bound:.0f} s passed")
    finally:
        overdue.cancel()
        ui.send_signal(signal.SIGTERM)
        rest = ui.communicate(timeout=60)[1]
    assert ui.returncode == 0 and "error" not in rest, rest
