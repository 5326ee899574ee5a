"""The ``benchmark`` fixture where pytest-benchmark is not installed (registered by
``benchmarks/conftest.py``): the same tests, ``benchmark.pedantic`` timed with the timer of the
test's ``benchmark(timer=...)`` mark, and ``--benchmark-json`` written with the fields of
pytest-benchmark's file that ``benchmarks/report.py`` reads (times in seconds).
"""

from __future__ import annotations

import datetime as _dt
import json
import statistics
import time
from pathlib import Path

import pytest

_RESULTS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("benchmark", "benchmark (pytest-benchmark not installed: fallback)")
    g.addoption("--benchmark-only", action="store_true",
                help="accepted: every test under benchmarks/ is a benchmark")
    g.addoption("--benchmark-disable", action="store_true",
                help="run each benchmarked function once, untimed")
    g.addoption("--benchmark-json", default=None, metavar="PATH",
                help="write the results to PATH in pytest-benchmark's layout")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "benchmark(timer=...): the timer of a benchmark")
    config.stash[_RESULTS] = []


class Benchmark:
    """``benchmark.pedantic``, ``extra_info`` and ``disabled`` of pytest-benchmark's fixture."""

    def __init__(self, node: pytest.Item, disabled: bool, results: list) -> None:
        mark = node.get_closest_marker("benchmark")
        self._timer = mark.kwargs.get("timer", time.perf_counter) if mark else time.perf_counter
        self._node, self._results = node, results
        self.disabled = disabled
        self.extra_info: dict = {}

    def pedantic(self, target, args=(), kwargs=None, setup=None, teardown=None, rounds=1,
                 warmup_rounds=0, iterations=1):
        if iterations != 1:
            raise ValueError("Benchmark.pedantic: the fallback runs iterations=1 only, got "
                             f"{iterations}")
        kwargs = kwargs or {}
        times, result = [], None
        for i in range(1 if self.disabled else warmup_rounds + rounds):
            a, k = setup() if setup else (args, kwargs)
            t0 = self._timer()
            result = target(*a, **k)
            elapsed = self._timer() - t0
            if teardown:
                teardown(*a, **k)
            if i >= warmup_rounds:
                times.append(elapsed)
        if not self.disabled:
            q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
            self._results.append({
                "name": self._node.name, "fullname": self._node.nodeid,
                "params": None, "extra_info": self.extra_info,
                "stats": {"min": min(times), "max": max(times), "mean": statistics.mean(times),
                          "median": statistics.median(times), "q1": q[0], "q3": q[2],
                          "iqr": q[2] - q[0], "rounds": len(times), "data": times}})
        return result


@pytest.fixture
def benchmark(request: pytest.FixtureRequest) -> Benchmark:
    config = request.config
    return Benchmark(request.node, config.getoption("benchmark_disable"), config.stash[_RESULTS])


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("benchmark_json")
    if path:
        Path(path).write_text(json.dumps({
            "datetime": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "machine_info": {}, "commit_info": {}, "version": "fallback",
            "benchmarks": session.config.stash[_RESULTS]}, indent=1, default=str))
