"""The results side's rules (a trial's status, the best trial, the ranking) as tables, the report page's
escaping, and its templates shipped. (Its imports and module sizes: test_structure.py.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from torchmate_ray.tune.records.rows import (Score, TrialRow, best_trial, ended_status, live_status, parse_score, rank_trials,
                                     score_curve, score_label)
from torchmate_ray.tune.results.data import ComputeAccount, ReportData
from torchmate_ray.tune.results.page import render_report_html
from torchmate_ray.tune.search.space import SearchSpace, read_settings

ROOT = Path(__file__).resolve().parents[1]


def row(trial_id: str, value: float | None, status: str = "finished") -> TrialRow:
    return TrialRow(trial_id, status, 3, value, {})


@pytest.mark.parametrize("mode, rows, best, ranked", [
    ("max", [row("t1", 0.5), row("t2", 0.9), row("t3", 0.7)], "t2", ["t2", "t3", "t1"]),
    ("min", [row("t1", 0.5), row("t2", 0.9), row("t3", 0.7)], "t1", ["t1", "t3", "t2"]),
    ("max", [row("t2", 0.8), row("t1", 0.8)], "t1", ["t1", "t2"]),
    ("max", [row("t1", 0.9, "errored"), row("t2", 0.1, "stopped")], "t2", ["t1", "t2"]),
    ("max", [row("t1", None), row("t2", 0.1, "running")], "t2", ["t2", "t1"]),
    ("max", [row("t1", None), row("t2", None, "errored")], None, ["t1", "t2"]),
], ids=["max", "min", "tie-to-smaller-id", "errored-never-best", "no-value-never-best", "none"])
def test_best_and_ranking(mode, rows, best, ranked):
    found = best_trial(rows, mode)
    assert (found.trial_id if found else None) == best
    assert [r.trial_id for r in rank_trials(rows, mode)] == ranked


@pytest.mark.parametrize("state, epochs, status", [
    ("RUNNING", 3, "running"),         # Tune's live status comes first: it is not stale
    ("PENDING", 0, "pending"),
    ("PAUSED", 1, "pending"),
    ("TERMINATED", 3, "finished"),
    ("TERMINATED", 1, "stopped"),
    ("ERROR", 3, "errored"),
], ids=["running", "pending", "paused", "finished", "stopped", "errored"])
def test_live_status(state, epochs, status):
    assert live_status(state, epochs, max_epochs=3) == status


def test_an_ended_trial_is_finished_only_at_max_epochs():
    assert [ended_status(e, 3) for e in (1, 3, 4)] + [ended_status(3, 3, errored=True)] == \
        ["stopped", "finished", "finished", "errored"]


CURVE = [(1, 0.5), (2, 0.7), (3, 0.9), (4, 0.6), (5, 0.4)]  # peaked at epoch 3


@pytest.mark.parametrize("score, mode, curve, value", [
    ("last", "max", CURVE, 0.4),
    ("best", "max", CURVE, 0.9),                 # Ray's scope "all"
    ("best", "min", CURVE, 0.4),
    ("last-2", "max", CURVE, 0.5),               # Ray's "last-5-avg", for any k
    ("last-10", "max", CURVE[:2], 0.6),          # fewer epochs than k: the mean of those it has
    ("last-1", "max", CURVE, 0.4),
    ("best", "max", [], None),
], ids=["last", "best-max", "best-min", "last-2", "last-k-beyond-the-curve", "last-1-is-last", "no-epochs"])
def test_a_trial_is_scored_by_its_curve(score, mode, curve, value):
    assert score_curve(curve, score, mode) == (pytest.approx(value) if value is not None else None)


@pytest.mark.parametrize("text, score", [
    ("last", Score("last")), ("best", Score("best")), ("last-3", Score("last-k", 3)),
    ("last-0", None), ("last-03", None), ("all", None), ("last-5-avg", None), ("Best", None), (3, None),
], ids=["last", "best", "last-3", "last-0", "leading-zero", "ray-all", "ray-last-5-avg", "capital", "not-a-string"])
def test_which_scores_there_are(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize("score, label", [("last", "val/acc"), ("best", "val/acc (best epoch)"),
                                          ("last-3", "val/acc (mean of last 3)")], ids=["last", "best", "last-3"])
def test_a_score_is_named_where_it_is_shown(score, label):
    assert score_label("val/acc", score) == label


def test_the_page_escapes_every_value(tmp_path):
    space = SearchSpace(Path("<b>space.py"), {"training": {"max_epochs": 3}}, read_settings({"metric": "a<b"}))
    trial = TrialRow("<i>t1", "errored", 0, None, {}, node="&node", error='<script>alert("x")</script>')
    data = ReportData(tmp_path, space, [trial], {}, [], [], ComputeAccount(0, 0.0, 0, 0.0))
    page = render_report_html(data, {})
    assert "<script" not in page and "<b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page and "&amp;node" in page
    assert "<code>a&lt;b</code>" in page and "<code>&lt;b&gt;space.py</code>" in page


# --- layout (the imports and sizes of the results side's modules: test_structure.py) ----------------------
def test_the_templates_are_package_data():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    templates = ROOT / "torchmate_ray" / "tune" / "templates"
    shipped = {p for pattern in package_data["torchmate_ray.tune"] for p in templates.parent.glob(pattern)}
    assert set(templates.iterdir()) == shipped and shipped


# --- every file of an experiment is written whole (json_files.written_whole) ---------------------------------------
def test_a_file_is_replaced_whole_or_keeps_what_it_held(tmp_path):
    from torchmate_ray.tune.records.files import write_whole, written_whole

    path = tmp_path / "summary.json"
    write_whole(path, '{"state": "running"}\n')
    with pytest.raises(RuntimeError), written_whole(path) as partial:
        partial.write_text('{"sta')  # a writer that fails half-way
        raise RuntimeError("disk full")
    assert path.read_text() == '{"state": "running"}\n' and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    write_whole(path, b'{"state": "ended"}\n')
    assert path.read_text() == '{"state": "ended"}\n' and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_the_ray_layer_writes_its_files_one_way():
    """Every file of an experiment goes through json_files.written_whole: no other write in tune/ (but the
    storage check's probe file, storage.py, which is a test of the directory and not one of its files)."""
    import ast

    writes = []
    for path in sorted((ROOT / "torchmate_ray" / "tune").rglob("*.py")):
        if path.name in ("json_files.py", "storage.py"):
            continue
        tree = ast.parse(path.read_text())
        handed_out = {item.optional_vars.id for node in ast.walk(tree) if isinstance(node, ast.With)
                      for item in node.items if isinstance(item.optional_vars, ast.Name)
                      and isinstance(item.context_expr, ast.Call) and getattr(item.context_expr.func, "id", "")
                      == "written_whole"}  # the partial file that written_whole renames
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and not (
                    isinstance(node.func.value, ast.Name) and node.func.value.id in handed_out) and (
                    node.func.attr in ("write_text", "write_bytes") or (node.func.attr == "open" and any(
                        isinstance(arg, ast.Constant) and str(arg.value).startswith(("w", "x"))
                        for arg in node.args))):
                writes.append(f"{path.name}:{node.lineno} {node.func.attr}")
    assert writes == [], "write these with json_files.write_whole or written_whole:\n" + "\n".join(writes)
