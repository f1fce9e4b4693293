"""torchmate-tune report: the data behind every plot checked against the experiment's own files, the page
opened in headless Chromium from disk, running/interrupted experiments, comparing two sweeps, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from torchmate_ray.cli import tune_main
from torchmate_ray.tune.records.rows import trial_status
from torchmate_ray.tune.results.data import Rung, build_report_data, build_rungs
from torchmate_ray.tune.results.page import write_report
from torchmate_ray.tune.search.space import SearchSpace, read_settings


METRIC, MAX_EPOCHS, RUNGS = "val/accuracy", 4, [1, 2, 4]
PLOTS = ["learning_curves", "rung_survival", "params_vs_metric", "parallel_coordinates"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def sweep(finished_sweep):
    """conftest's finished_sweep: 6 trials (3 grid points x 2 samples; the 2 with hidden [8] raise), 4 epochs, ASHA
    with rungs at 1, 2 and 4 epochs. Its end writes report.html."""
    code, directory, stdout = finished_sweep
    assert code == 1  # the exploding trials errored
    return directory, stdout


def read_trial_files(directory: Path) -> dict[str, dict]:
    """Each trial as its raw files say: epochs, the metric per epoch, seconds, errored."""
    trials = {}
    for trial_dir in directory.iterdir():
        if not (trial_dir / "params.json").is_file():
            continue
        text = (trial_dir / "result.json").read_text() if (trial_dir / "result.json").is_file() else ""
        lines = [json.loads(line) for line in text.splitlines() if line.endswith("}")]  # not a line cut short
        trials[trial_dir.name] = {
            "epochs": max((line["epochs"] for line in lines), default=0),
            "curve": [(line["epochs"], line[METRIC]) for line in lines],
            "seconds": lines[-1]["time_total_s"] if lines else 0.0,
            "errored": (trial_dir / "error.txt").is_file(),
        }
    return trials


@pytest.mark.slow
def test_trials_statuses_and_curves_are_the_files(sweep):
    directory, _ = sweep
    files, data = read_trial_files(directory), build_report_data(directory)
    assert len(files) == 6 and sum(t["errored"] for t in files.values()) == 2
    assert {t.trial_id: t.epochs for t in data.trials} == {k: t["epochs"] for k, t in files.items()}
    assert {t.trial_id: t.curve for t in data.trials} == {k: t["curve"] for k, t in files.items()}
    for trial in data.trials:
        raw = files[trial.trial_id]
        expected = ("errored" if raw["errored"] else "finished" if raw["epochs"] == MAX_EPOCHS else "stopped")
        assert trial.status == expected
        assert trial.value == (raw["curve"][-1][1] if raw["curve"] else None)
    assert data.complete and data.best is data.trials[0]
    assert data.best.value == max(t["curve"][-1][1] for t in files.values() if t["curve"])


@pytest.mark.slow
def test_rung_counts_are_the_trials_epoch_counts(sweep):
    directory, _ = sweep
    files, data = read_trial_files(directory), build_report_data(directory)
    assert data.rungs == [Rung(m, sum(t["epochs"] >= m for t in files.values())) for m in RUNGS]
    assert data.rungs[0].reached == 4  # every trial that did not raise passed the first rung


@pytest.mark.slow
def test_compute_account_sums_the_trials_files(sweep):
    directory, _ = sweep
    files, compute = read_trial_files(directory), build_report_data(directory).compute
    assert compute.epochs == sum(t["epochs"] for t in files.values())
    assert compute.seconds == pytest.approx(sum(t["seconds"] for t in files.values()))
    ran = [t for t in files.values() if not t["errored"]]
    assert compute.epochs_without_stopping == MAX_EPOCHS * len(ran)  # the errored trials ran no epoch
    assert compute.seconds_without_stopping == pytest.approx(sum(t["seconds"] / t["epochs"] * MAX_EPOCHS for t in ran))
    assert compute.gpus_per_trial == 0 and compute.gpu_seconds == 0


@pytest.mark.slow
@pytest.mark.parametrize("path, scale, categories", [
    ("model.name", "categorical", None),
    ("model.cfg.hidden", "categorical", ["[16]", "[32]", "[8]"]),
    ("optimizer.name", "categorical", ["Adam", "SGD"]),
    ("optimizer.cfg.lr", "log", []),
], ids=["sample_from", "grid_search", "choice", "loguniform"])
def test_scatter_points_are_the_trials_with_a_metric(sweep, path, scale, categories):
    directory, _ = sweep
    files, data = read_trial_files(directory), build_report_data(directory)
    axis = next(a for a in data.params if a.path == path)
    assert axis.scale == scale
    if categories is not None:
        assert axis.categories == categories
    points = data.points(axis)
    assert sorted(trial_id for _, _, trial_id in points) == sorted(k for k, t in files.items() if t["curve"])
    for value, metric, trial_id in points:
        raw = json.loads((directory / trial_id / "params.json").read_text())
        for part in path.split("."):
            raw = raw[part]
        assert metric == files[trial_id]["curve"][-1][1]
        assert value == (str(raw) if scale == "categorical" else raw)


@pytest.mark.slow
def test_parallel_coordinates_scale_every_axis_to_its_range(sweep):
    directory, _ = sweep
    data = build_report_data(directory)
    coords = data.parallel_coordinates()
    assert coords.axes == [a.path for a in data.params] + [METRIC]
    assert len(coords.lines) == sum(t.value is not None for t in data.trials) == 4
    for column in zip(*(line for _, line in coords.lines)):
        assert all(0 <= x <= 1 for x in column)
    assert dict(coords.lines)[data.best.trial_id][-1] == 1.0  # mode max: the best trial tops the metric axis


@pytest.mark.slow
def test_the_sweep_writes_the_report_with_every_plot_embedded(sweep):
    directory, stdout = sweep
    assert f"report: {directory / 'report.html'}" in stdout.splitlines()
    page = (directory / "report.html").read_text()
    for name in PLOTS:
        with Image.open(directory / "report" / f"{name}.png") as image:
            image.verify()
            assert image.size[0] > 300 and image.size[1] > 200
    assert page.count('src="data:image/png;base64,') == len(PLOTS)
    assert not any(text in page for text in ("http:", "https:", "<script", "<link", "url("))  # nothing fetched
    assert page.count('<tr class="errored">') == 2 and "RuntimeError: exploding model" in page


def open_in_chromium(page_path: Path) -> tuple[list[dict], list[str]]:
    """Load a page from disk in headless Chromium: its images' (complete, naturalWidth) and every URL requested."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' (it adds playwright)")
    if not Path(CHROMIUM).is_file():
        pytest.skip("no chromium: apt-get install -y chromium (.ci/run installs it)")
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("request", lambda request: requests.append(request.url))
        page.goto(page_path.as_uri(), wait_until="load")
        images = page.evaluate("() => Array.from(document.images, i => ({complete: i.complete, width: i.naturalWidth}))")
        browser.close()
    return images, requests


@pytest.mark.slow
def test_the_report_opens_from_disk_in_headless_chromium(sweep):
    directory, _ = sweep
    images, requests = open_in_chromium(directory / "report.html")
    assert len(images) == len(PLOTS)
    assert all(image["complete"] and image["width"] > 0 for image in images)
    assert requests and all(url.startswith(("file:", "data:")) for url in requests)


@pytest.fixture(scope="module")
def other_sweep(sweep, tmp_path_factory):
    """A second experiment: the first one's copy whose best trial had another learning rate."""
    directory, _ = sweep
    other = tmp_path_factory.mktemp("other") / "exp-b"
    shutil.copytree(directory, other)
    best = build_report_data(directory).best.trial_id
    params = json.loads((other / best / "params.json").read_text())
    params["optimizer"]["cfg"]["lr"] = 0.5
    (other / best / "params.json").write_text(json.dumps(params))
    return other


@pytest.mark.slow
def test_compare_puts_two_sweeps_side_by_side(sweep, other_sweep, capsys):
    directory, _ = sweep
    assert tune_main(["report", str(directory), str(other_sweep)]) == 0
    path = directory / "compare-exp-b.html"
    assert capsys.readouterr().out == f"report: {path}\n"
    page = path.read_text()
    data = build_report_data(directory)
    lr = data.best.params["optimizer.cfg.lr"]
    assert page.count("<code>optimizer.cfg.lr</code>") == 1 and f"<td>{lr:.4g}</td><td>0.5</td>" in page
    assert page.count("<code>") == 1  # the only difference between the best configs
    assert f"<td>{data.best.value:.4f}</td><td>{data.best.value:.4f}</td>" in page
    assert f"<td>{data.compute.epochs} ({data.compute.epochs_without_stopping})</td>" in page
    images, requests = open_in_chromium(path)
    assert len(images) == 1 and images[0]["width"] > 0
    assert all(url.startswith(("file:", "data:")) for url in requests)


def interrupt(directory: Path, target: Path, keep_state: bool) -> str:
    """A copy of the experiment as if its driver had been killed: no summary.json, the longest trial's
    result.json cut after 2 epochs (and half a line), one more trial started with no result yet."""
    shutil.copytree(directory, target)
    for name in ("summary.json", "report.html"):
        (target / name).unlink()
    shutil.rmtree(target / "report")
    longest = max(build_report_data(directory).trials, key=lambda t: (t.epochs, t.trial_id)).trial_id
    lines = (target / longest / "result.json").read_text().splitlines()
    (target / longest / "result.json").write_text("\n".join(lines[:2]) + '\n{"val/accuracy": 0.9, "ep')
    (target / "fresh_00099").mkdir()
    shutil.copy(target / longest / "params.json", target / "fresh_00099" / "params.json")
    for state_file in target.glob("experiment_state-*.json"):
        if not keep_state:
            state_file.unlink()
            continue
        state = json.loads(state_file.read_text())
        for entry in state["trial_data"]:
            trial = json.loads(entry[0])
            if trial["trial_id"] == longest:
                entry[0] = json.dumps({**trial, "status": "RUNNING"})
        state_file.write_text(json.dumps(state))
    return longest


@pytest.mark.slow
@pytest.mark.parametrize("keep_state, cut_status, other_short_status", [
    (True, "running", "stopped"),          # Tune's state says which trial runs and which ASHA stopped
    (False, "incomplete", "incomplete"),   # no state file: fewer epochs than max, reason unknown
], ids=["with-experiment-state", "without"])
def test_a_running_or_interrupted_experiment_is_reported(sweep, tmp_path, capsys, keep_state, cut_status,
                                                         other_short_status):
    directory, _ = sweep
    cut = interrupt(directory, tmp_path / "exp", keep_state)
    assert tune_main(["report", str(tmp_path / "exp")]) == 0
    files, data = read_trial_files(tmp_path / "exp"), build_report_data(tmp_path / "exp")
    by_id = {t.trial_id: t for t in data.trials}
    assert not data.complete and len(data.trials) == len(files) == 7
    assert (by_id[cut].epochs, by_id[cut].status) == (2, cut_status)
    assert (by_id["fresh_00099"].epochs, by_id["fresh_00099"].status, by_id["fresh_00099"].value) == (0, "incomplete", None)
    shorter = [t.status for t in data.trials if 0 < t.epochs < MAX_EPOCHS and t.trial_id != cut]
    assert set(shorter) <= {other_short_status}
    assert data.rungs == [Rung(m, sum(t["epochs"] >= m for t in files.values())) for m in RUNGS]
    assert data.compute.epochs == sum(t["epochs"] for t in files.values())
    assert data.compute.epochs == sum(t["epochs"] for t in read_trial_files(directory).values()) - (MAX_EPOCHS - 2)
    page = (tmp_path / "exp" / "report.html").read_text()
    assert "still running or interrupted" in page and page.count("data:image/png;base64,") == len(PLOTS)


@pytest.mark.parametrize("status, args", [
    ("errored", (1, 4, True, "TERMINATED", True)),
    ("finished", (4, 4, False, None, False)),
    ("running", (2, 4, False, "RUNNING", False)),
    ("pending", (0, 4, False, "PENDING", False)),
    ("stopped", (2, 4, False, "TERMINATED", False)),
    ("stopped", (2, 4, False, None, True)),
    ("incomplete", (2, 4, False, None, False)),
], ids=["error-file", "max-epochs", "state-running", "state-pending", "state-terminated", "summary", "unknown"])
def test_trial_status(status, args):
    assert trial_status(*args) == status


@pytest.mark.parametrize("scheduler, max_epochs, milestones", [
    ("asha", 9, [1, 3, 9]),
    ("asha", 10, [1, 3, 9, 10]),
    ({"name": "asha", "cfg": {"grace_period": 2, "reduction_factor": 2}}, 10, [2, 4, 8, 10]),
    ({"name": "asha", "cfg": {"max_t": 5}}, 10, [1, 3, 5]),
    ("fifo", 3, [1, 2, 3]),
], ids=["defaults", "max-not-a-power", "cfg", "cfg-max_t", "not-asha-every-epoch"])
def test_rungs_follow_the_scheduler(scheduler, max_epochs, milestones):
    space = SearchSpace(Path("space.py"), {"training": {"max_epochs": max_epochs}}, read_settings({"scheduler": scheduler}))
    assert [rung.epochs for rung in build_rungs(space, [])] == milestones


@pytest.mark.parametrize("make, args, expected", [
    (None, ["report", "{tmp}/missing"], "{tmp}/missing: no such directory; give an experiment directory "
                                        "(<storage_path>/<name>, as torchmate-tune printed it)"),
    ("dir", ["report", "{tmp}/plain"], "{tmp}/plain: is not a torchmate-tune experiment (no torchmate_sweep.json); "
                                       "give the directory torchmate-tune printed as 'experiment:'"),
    ("gone", ["report", "{tmp}/plain"], "{tmp}/plain: cannot reload the sweep's search space ({tmp}/gone.py: no such "
                                        "file; check the path); restore that file: the report needs its metric and "
                                        "domains"),
    ("torn", ["report", "{tmp}/plain"], "{tmp}/plain/torchmate_sweep.json: unreadable or incomplete; it is written "
                                        "by torchmate-tune when a sweep starts: restore it"),
], ids=["missing", "not-an-experiment", "space-file-gone", "torn-invocation"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make, args, expected):
    if make:
        (tmp_path / "plain").mkdir()
    if make == "gone":
        (tmp_path / "plain" / "torchmate_sweep.json").write_text(json.dumps({
            "space_file": str(tmp_path / "gone.py"), "overrides": [], "max_epochs": 2, "settings": {}, "resources": {}}))
    if make == "torn":
        (tmp_path / "plain" / "torchmate_sweep.json").write_text('{"space_file": ')
    assert tune_main([arg.format(tmp=tmp_path) for arg in args]) == 2
    assert capsys.readouterr().err == f"torchmate-tune: error: {expected.format(tmp=tmp_path)}\n"


def test_report_help_says_where_pages_go(capsys):
    with pytest.raises(SystemExit):
        tune_main(["report", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "default: EXPERIMENT_DIR/report.html, or with DIR_B: EXPERIMENT_DIR/compare-<DIR_B's name>.html" in help_text
    with pytest.raises(SystemExit):
        tune_main(["--help"])
    assert "torchmate-tune report EXPERIMENT_DIR [DIR_B] [--output PATH]" in " ".join(capsys.readouterr().out.split())


def test_the_end_of_a_500_trial_sweep_writes_a_page_to_read_and_every_trial_in_the_files(tmp_path):
    """bench/end_scale.py's synthetic experiment (lenet.py's trials as ASHA stops them; bench/end_scale.py times it
    at 10,000): its results and page, as the command writes them when its sweep ends. The page shows the leading
    trials and says where the rest are; its learning curves draw the leaders and a density of the others; it opens
    in headless Chromium with every plot."""
    import sys

    from torchmate_ray.tune.experiment.directory import load_experiment_space
    from torchmate_ray.tune.results.finish import finish_sweep
    from torchmate_ray.tune.results.page import LEADERBOARD_ROWS
    from torchmate_ray.tune.results.plots import LEADERS, plot_learning_curves

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from synthetic_experiment import write_synthetic_experiment

    directory = write_synthetic_experiment(tmp_path / "exp", trials=500)
    summary, text = finish_sweep(directory, load_experiment_space(directory), 10.0)
    assert summary["num_trials"] == 500 and sum(summary["trials"].values()) == 500
    assert summary["trials"]["errored"] == 5 and len(summary["errors"]) == 5  # every 97th
    assert len((directory / "leaderboard.csv").read_text().splitlines()) == 1 + 500
    assert (directory / "best" / "model.ckpt").is_file() and f"best: {summary['best_trial']} " in text
    page = (directory / "report.html").read_text()
    assert page.count("<tr class=") == LEADERBOARD_ROWS and f"{LEADERBOARD_ROWS} of 500 trials shown" in page
    curves = plot_learning_curves(build_report_data(directory)).axes[0]
    trials = [line for line in curves.lines if line.get_marker() == "o"]  # (the rungs: dotted lines without)
    assert len(trials) == LEADERS and len(curves.collections) == 1  # the leaders as lines, the others a density
    assert curves.get_title().startswith(f"Learning curves: the {LEADERS} best of 500 trials; the other")
    images, requests = open_in_chromium(directory / "report.html")
    assert len(images) == len(PLOTS) and all(image["complete"] and image["width"] > 0 for image in images)
    assert all(url.startswith(("file:", "data:")) for url in requests)
