"""evaluate, plot and report stages, checked on the session's fixture pipeline run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from pipeline.reporting.figure_names import FIGURES
from pipeline.reporting.stats import mcnemar
from tests.helpers import VENV_BIN, dvc, mlflow_client, runs_by_setting, seed_path, tiny_params
from tests.helpers import run as run_command

pytestmark = pytest.mark.e2e

SETTINGS = tiny_params()["settings"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_test_metrics_in_files_and_runs(pipeline_run):
    repo, _, _ = pipeline_run
    runs = runs_by_setting(repo)
    for name in SETTINGS:
        evaluation = json.loads((repo / seed_path("metrics/eval", name)).read_text())
        metrics = runs[name].data.metrics
        assert metrics["test_accuracy"] == float(f"{evaluation['test_accuracy']:.4g}")  # MLflow's: 4 digits
        assert metrics["test_loss"] == float(f"{evaluation['test_loss']:.4g}")
        assert len(evaluation["per_class_accuracy"]) == 10
        confusion = (repo / seed_path("plots/confusion", name, suffix=".csv")).read_text().splitlines()
        assert confusion[0] == "actual,predicted" and len(confusion) == 101  # 100 fixture test images
    assert "cat" in evaluation["per_class_accuracy"]  # CIFAR settings report class names


def test_every_figure_is_a_png_logged_to_its_run(pipeline_run):
    repo, _, _ = pipeline_run
    runs = runs_by_setting(repo)
    client = mlflow_client(repo)
    for name in SETTINGS:
        for figure in FIGURES:
            data = (repo / "reports" / "figures" / name / f"{figure}.png").read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 10_000, (name, figure, len(data))
        logged = {a.path for a in client.list_artifacts(runs[name].info.run_id, "figures")}
        assert logged == {f"figures/{figure}.png" for figure in FIGURES}
        assert runs[name].info.status == "FINISHED"


def _sweep_rows(markdown: str) -> list[tuple[str, list[str]]]:
    """(sweep heading, cells) for every row of a sweep table; rows end in the setting's name."""
    rows, heading = [], ""
    for line in markdown.splitlines():
        if line.startswith("### "):
            heading = line[4:]
        elif heading.startswith("Effect of") and line.startswith("|") and line.rstrip().endswith("` |"):
            rows.append((heading, [cell.strip() for cell in line.strip().strip("|").split("|")]))
    return rows


def test_report_tables_match_the_metrics_files(pipeline_run):
    repo, _, _ = pipeline_run
    markdown = (repo / "reports" / "report.md").read_text()
    # one table per (dataset, sweep): the fixture settings make mnist kernel + l2, cifar10 kernel + l2
    assert markdown.count("### Effect of the kernel size") == 2 and markdown.count("### Effect of L2") == 2
    rows = _sweep_rows(markdown)
    per_table = {}
    for heading, cells in rows:
        per_table.setdefault(heading, []).append(cells[-1].strip("`"))
    assert sorted(name for names in per_table.values() for name in names) == sorted(
        ["mnist-k3-s1", "mnist-k3-s1", "mnist-k3-s1-l2", "cifar10-k3-s1", "cifar10-k3-s1", "cifar10-k3-s1",
         "cifar10-k3-s1-rgb"])
    assert per_table["Effect of the color (against `cifar10-k3-s1`)"] == ["cifar10-k3-s1", "cifar10-k3-s1-rgb"]
    for _, cells in rows:
        name = cells[-1].strip("`")
        train = json.loads((repo / seed_path("metrics/train", name)).read_text())
        test = json.loads((repo / seed_path("metrics/eval", name)).read_text())
        assert cells[1:5] == [f"{train['train_loss']:.4f}", f"{train['train_accuracy']:.4f}",
                              f"{train['val_accuracy']:.4f}", f"{test['test_accuracy']:.4f}"]
    mnist_k3 = [cells for _, cells in rows if cells[-1] == "`mnist-k3-s1`"]
    assert [cells[0] for cells in mnist_k3] == ["(3,3)", "NO"]
    assert mnist_k3[0][8] == "0.9858"  # the homework's test accuracy, beside ours
    # each row against its sweep's first: one seed each, so McNemar's test on the predictions, whose
    # difference the table shows; a smoke run's (2 epochs) verdict says beside it that it means nothing yet
    verdicts = {(heading, cells[-1]): cells[-2] for heading, cells in rows}
    assert verdicts[("Effect of the kernel size (strides 1)", "`mnist-k3-s1`")] == "reference"
    y_test = np.load(repo / "data" / "prepared" / "mnist" / "y_test.npy")
    correct = {name: np.load(repo / seed_path("predictions", name, suffix=".npy")).argmax(axis=1) == y_test
               for name in ("mnist-k3-s1", "mnist-k3-s1-l2")}
    expected = mcnemar(correct["mnist-k3-s1-l2"], correct["mnist-k3-s1"])
    [l2_row] = [cells for heading, cells in rows
                if heading.startswith("Effect of L2") and cells[-1] == "`mnist-k3-s1-l2`"]
    assert l2_row[-3].startswith(f"{expected.difference * 100:+.2f} pp")
    assert l2_row[-2] == f"{expected.verdict} (smoke run: not yet meaningful)"
    assert "Verdicts: McNemar's exact test" in markdown and "Smoke run: 2 epochs" in markdown


def test_html_is_self_contained(pipeline_run):
    repo, _, _ = pipeline_run
    html = (repo / "reports" / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]*)"', html)
    markdown_images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (repo / "reports" / "report.md").read_text())
    assert len(sources) == len(markdown_images) > 10
    assert all(src.startswith("data:image/png;base64,") for src in sources)


def test_report_logged_as_a_run_of_its_own_experiment(pipeline_run):
    repo, _, _ = pipeline_run
    client = mlflow_client(repo)
    [run] = client.search_runs([client.get_experiment_by_name("hw2-report").experiment_id])
    assert run.data.tags["smoke_run"] == "true" and run.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(run.info.run_id, "report")} >= {
        "report/report.md", "report/report.html", "report/summary"}
    for experiment in ("mnist-cnn", "cifar10-gray-cnn"):
        experiment_id = client.get_experiment_by_name(experiment).experiment_id
        assert not client.search_runs([experiment_id], filter_string="tags.kind = 'report'")


def test_artifacts_live_under_mlruns_artifacts(pipeline_run):
    repo, _, _ = pipeline_run
    run = runs_by_setting(repo)["mnist-k3-s1"]
    root = repo / "mlruns" / "artifacts" / "mnist-cnn"
    assert run.info.artifact_uri == (root / run.info.run_id / "artifacts").as_uri()
    figures = root / run.info.run_id / "artifacts" / "figures"
    # the figures logged are the ones the plot stage wrote, byte for byte, every one of them
    for figure in FIGURES:
        logged = (figures / f"{figure}.png").read_bytes()
        assert logged == (repo / "reports" / "figures" / "mnist-k3-s1" / f"{figure}.png").read_bytes(), figure
    # one logged model for the run, stored beside the runs, and it is this run's (the register
    # stage's served models, logged apart from any run, carry no run id)
    models = [yaml.safe_load(path.read_text()) for path in root.glob("models/*/artifacts/MLmodel")]
    trained = [model["run_id"] for model in models if "run_id" in model]
    assert trained.count(run.info.run_id) == 1
    assert set(trained) <= {r.info.run_id for r in runs_by_setting(repo).values()}


def test_dvc_plots_and_metrics_show(pipeline_run):
    """Each file read, with the numbers the stages wrote: DVC lists a file it failed to read too,
    with an error in place of its data."""
    repo, env, _ = pipeline_run
    shown = json.loads(dvc(repo, "metrics", "show", "--json", env=env).stdout)
    files = next(iter(shown.values()))["data"]
    for name in SETTINGS:
        evaluation = json.loads((repo / seed_path("metrics/eval", name)).read_text())
        read = files[seed_path("metrics/eval", name).as_posix()]
        assert "error" not in read, read
        assert {key: read["data"][key] for key in ("test_accuracy", "test_loss", "per_class_accuracy")} == {
            key: evaluation[key] for key in ("test_accuracy", "test_loss", "per_class_accuracy")}
    aggregates = files["metrics/aggregates.json"]["data"]
    assert aggregates["mnist-k3-s1"]["test_accuracy_n"] == 1
    evaluation = json.loads((repo / seed_path("metrics/eval", "mnist-k3-s1")).read_text())
    assert aggregates["mnist-k3-s1"]["test_accuracy_mean"] == round(evaluation["test_accuracy"], 6)
    shown = json.loads(dvc(repo, "plots", "show", "--json", env=env).stdout)
    assert "errors" not in shown, shown["errors"]
    for name in SETTINGS:
        for kind, title in (("history", "Validation accuracy per epoch"), ("confusion", "Test confusion matrix")):
            path = seed_path(f"plots/{kind}", name, suffix=".csv")
            [plot] = shown["data"][path.as_posix()]
            rows = len((repo / path).read_text().splitlines()) - 1  # less the header
            assert len(plot["content"]["data"]["values"]) == rows > 0
            assert f"{title}, {name} seed 0" in json.dumps(plot["content"])  # which setting, on the page


def test_each_setting_is_one_parent_run_with_its_seeds_nested(pipeline_run):
    repo, _, _ = pipeline_run
    client = mlflow_client(repo)
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(experiments, filter_string="tags.kind = 'parent'")
    assert sorted(run.info.run_name for run in parents) == sorted(SETTINGS)
    for parent in parents:
        [child] = client.search_runs(experiments, filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
        assert child.data.tags["setting"] == parent.data.tags["setting"] and child.data.tags["seed"] == "0"
        assert parent.data.tags["seeds"] == "0" and parent.data.tags["current"] == "true"
        assert parent.data.metrics["test_accuracy_n"] == 1
        assert parent.data.metrics["test_accuracy_mean"] == child.data.metrics["test_accuracy"]
        assert [m.step for m in client.get_metric_history(parent.info.run_id, "mean_val_accuracy")] == [1, 2]


def test_the_claims_section_judges_what_was_trained_and_says_what_was_not(pipeline_run):
    """The fixture trains four settings: the MNIST L2 claim and the gray-color one are judged (a smoke
    run, said so), every other says which settings it misses; its records give the same table through
    `python -m pipeline.claims`."""
    repo, env, _ = pipeline_run
    markdown = (repo / "reports" / "report.md").read_text()
    section = markdown.split("## The homework's claims")[1].split("## Provenance")[0]
    assert "> **Smoke run: the verdicts below are not yet meaningful**" in section
    rows = [line for line in section.splitlines() if line.startswith("| mnist-") or line.startswith("| cifar10-")]
    judged = [row for row in rows if "not run" not in row]
    assert [row.split(" | ")[0] for row in judged] == ["| mnist-l2", "| mnist-l2", "| cifar10-gray"]
    assert all("smoke run: not yet meaningful" in row for row in judged)
    # one seed each: train metrics have no test; test accuracy has McNemar's on the seed's predictions
    assert ["none: one seed each" in row for row in judged] == [True, True, False]
    assert "McNemar, seed 0, p = " in judged[2]
    assert "| `mnist-k5-s3` vs `mnist-k5-s1` | test_accuracy | lower |" in section
    assert "not run (no results for mnist-k5-s1, mnist-k5-s3)" in section
    records = json.loads((repo / "reports" / "runs.json").read_text())
    assert sorted(record["setting"] for record in records) == sorted(SETTINGS)
    printed = run_command([str(VENV_BIN / "python"), "-m", "pipeline.claims", "reports/runs.json"], repo, env=env)
    assert printed.stdout.strip() in section
