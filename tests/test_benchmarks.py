"""The op benchmarks (``pytest benchmarks/``) cannot rot: their tiny cases run, check every
provider against the reference and feed ``benchmarks/report.py``; a provider that disagrees with
the reference fails its benchmark instead of being timed."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import report
from benchmarks.providers import Case, check_and_time

REPO = Path(__file__).resolve().parents[1]


def test_tiny_benchmarks_pass_and_report_one_schema(tmp_path):
    out = tmp_path / "b.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "--benchmark-only", "-m", "tiny",
         "--bench-rounds", "1", "--benchmark-json", str(out), "-q", "-p", "no:cacheprovider"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert report.main([str(out), "--results", str(tmp_path), "--no-plot"]) == 0
    for name in ("contourlet", "texture_stats"):
        with (tmp_path / f"{name}.csv").open(newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        assert reader.fieldnames == report.SCHEMA
        assert {r["backend"] for r in rows} >= {"reference"}
        assert all(float(r["median_ms"]) > 0 and r["speedup_vs_ref"] for r in rows)


class _Untimed:
    """The ``benchmark`` fixture's surface, running the target once."""

    disabled = True

    def __init__(self) -> None:
        self.extra_info: dict = {}

    def pedantic(self, target, setup=None, rounds=1, warmup_rounds=0):
        args = setup()[0] if setup else ()
        return target(*args)


def _op(bad_forward: float, bad_gradient: float):
    def fn(x, backend):
        if backend == "reference":
            return [2 * x]
        return [2 * x + bad_forward + bad_gradient * (x - x.detach())]

    return fn


@pytest.mark.parametrize("bad_forward, bad_gradient, what", [
    (1e-3, 0.0, "forward"), (0.0, 1e-3, "gradient")])
def test_a_provider_that_disagrees_with_the_reference_is_not_timed(bad_forward, bad_gradient,
                                                                   what):
    case = Case("double", "cpu", (2, 3, 5, 7))
    x = torch.randn(case.shape)
    bench = _Untimed()
    with pytest.raises(AssertionError, match=f"cpu {what}"):
        check_and_time(bench, case, "cpu", "forward+backward", _op(bad_forward, bad_gradient),
                       [x], rounds=1, nbytes={"forward+backward": 1}, env={})
    assert bench.extra_info == {}
    check_and_time(bench, case, "cpu", "forward+backward", _op(0.0, 0.0), [x], rounds=1,
                   nbytes={"forward+backward": 1}, env={})
    assert bench.extra_info["max_err_vs_ref"] == "0.00e+00"
