"""The end of a sweep of many trials: its results files and report written from a synthetic experiment directory
(bench/synthetic_experiment.py, lenet.py's trials as ASHA stops them), the same call the command makes when its
sweep ends (results/finish.finish_sweep); then the page opened in headless Chromium and a screenshot taken.

    .venv/bin/python bench/end_scale.py                      # 1,000 then 10,000 trials
    .venv/bin/python bench/end_scale.py --trials 10000 --screenshot /tmp/report.png

Prints, per size: the seconds of each step (reading the experiment, the results files, the plots, the page) and
in all, the size of report.html and of each plot, and Chromium's load time. The issue asks for <= 60 s and
report.html <= 10 MB at 10,000 trials.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_experiment import write_synthetic_experiment  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def end_of_sweep(directory: Path) -> dict[str, float]:
    """finish_sweep, and its steps timed apart on a copy of what it reads (seconds)."""
    from torchmate_ray.tune.experiment.directory import load_experiment_space
    from torchmate_ray.tune.results.data import build_report_data
    from torchmate_ray.tune.results.finish import finish_sweep
    from torchmate_ray.tune.results.plots import render_plots

    space = load_experiment_space(directory)
    started = time.perf_counter()
    finish_sweep(directory, space, 1.0)
    total = time.perf_counter() - started
    started = time.perf_counter()
    data = build_report_data(directory, space, None)
    read = time.perf_counter() - started
    started = time.perf_counter()
    render_plots(data)
    plots = time.perf_counter() - started
    return {"finish_sweep_s": total, "of which reading the experiment_s": read, "of which the plots_s": plots}


def open_page(page: Path, screenshot: Path | None) -> float:
    """Seconds for headless Chromium to load the page from disk (with its images); a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox",
                                                                            "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        started = time.perf_counter()
        tab.goto(page.as_uri(), wait_until="load")
        loaded = time.perf_counter() - started
        broken = tab.evaluate("() => Array.from(document.images).filter(i => !i.complete || !i.naturalWidth).length")
        assert broken == 0, f"{broken} images did not load"
        if screenshot:
            tab.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, action="append", help="default: 1000 and 10000")
    parser.add_argument("--screenshot", type=Path, help="where to save the largest page's screenshot")
    args = parser.parse_args()
    os.environ["TORCHMATE_OFFLINE"] = "1"
    print(f"machine: {os.cpu_count()} CPUs")
    for trials in args.trials or (1000, 10_000):
        with tempfile.TemporaryDirectory() as root:
            directory = Path(root) / "exp"
            started = time.perf_counter()
            write_synthetic_experiment(directory, trials)
            print(f"\n{trials} trials (the synthetic experiment written in {time.perf_counter() - started:.1f} s)")
            for step, seconds in end_of_sweep(directory).items():
                print(f"  {step.removesuffix('_s')}: {seconds:.1f} s")
            page = directory / "report.html"
            print(f"  report.html: {page.stat().st_size / 1e6:.2f} MB; plots: " + ", ".join(
                f"{png.stem} {png.stat().st_size / 1e3:.0f} kB" for png in sorted((directory / "report").glob("*.png"))))
            print(f"  leaderboard.csv {(directory / 'leaderboard.csv').stat().st_size / 1e6:.2f} MB, summary.json "
                  f"{(directory / 'summary.json').stat().st_size / 1e3:.0f} kB, best/: "
                  f"{sorted(p.name for p in (directory / 'best').iterdir())}")
            print(f"  headless Chromium: loaded in {open_page(page, args.screenshot):.1f} s, every image shown"
                  + (f"; screenshot {args.screenshot}" if args.screenshot else ""))


if __name__ == "__main__":
    main()
