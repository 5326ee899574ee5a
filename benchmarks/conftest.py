"""Options, marks and shared fixtures of the op benchmarks (``pytest benchmarks/``).

Marks: ``quick`` (a small CPU subset), ``gpu`` (the CUDA cases), ``sweep`` (the size sweeps
beside the SSTKD sizes), ``compile`` (``reference+compile``), ``image_scale`` (few large
planes; run only when ``-m`` names it). Options: ``--bench-threads N``
(``torch.set_num_threads``), ``--bench-rounds N`` (timed rounds per benchmark). Without
pytest-benchmark installed, ``benchmarks/fallback.py`` provides the ``benchmark`` fixture and
its ``--benchmark-*`` options used here.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.harness import env_info
from benchmarks.providers import skip_reason

MARKS = {
    "quick": "a small CPU subset (minutes on 2 cores)",
    "gpu": "a CUDA case (skipped without a GPU)",
    "sweep": "the size sweep beside the SSTKD sizes",
    "compile": "the reference under torch.compile (slow to compile)",
    "image_scale": "few large planes, threads 1 and 2 (run only when -m names it)",
    "tiny": "tiny CPU cases: the machinery (tests/test_benchmarks.py, the GPU dry run)",
}


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if not pluginmanager.hasplugin("benchmark"):
        from benchmarks import fallback

        pluginmanager.register(fallback, "benchmark-fallback")
    parser.addoption("--bench-threads", type=int, default=None, metavar="N",
                     help="torch.set_num_threads(N) for the whole run")
    parser.addoption("--bench-rounds", type=int, default=None, metavar="N",
                     help="timed rounds per benchmark (default: 5 on CPU, 20 on CUDA, 3 at "
                          "image scale)")
    parser.addoption("--bench-providers", default=None, metavar="P1,P2",
                     help="run only these providers (reference, reference+compile, cpu, "
                          "triton, cuda)")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    for opt in ("bench_threads", "bench_rounds"):
        value = config.getoption(opt)
        if value is not None and value < 1:
            raise pytest.UsageError(f"--{opt.replace('_', '-')}: expected a positive integer, "
                                    f"got {value}")
    if config.getoption("bench_threads"):
        torch.set_num_threads(config.getoption("bench_threads"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the image-scale sweep unless ``-m`` names it, and the providers
    ``--bench-providers`` does not name."""
    image_scale = "image_scale" in (config.option.markexpr or "")
    wanted = config.getoption("bench_providers")
    wanted = set(wanted.split(",")) if wanted else None

    def keeps(item: pytest.Item) -> bool:
        if not image_scale and item.get_closest_marker("image_scale") is not None:
            return False
        params = getattr(item, "callspec", None) and item.callspec.params
        return not (wanted and params and params.get("provider") not in wanted)

    keep = [i for i in items if keeps(i)]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a provider that cannot run here, with its reason, before its inputs are made."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and {"case", "provider"} <= set(callspec.params):
        reason = skip_reason(callspec.params["provider"], callspec.params["case"].device)
        if reason:
            pytest.skip(reason)


class Settings:
    """What every benchmark of the run shares: its machine record and round count."""

    def __init__(self, config: pytest.Config) -> None:
        self._rounds = config.getoption("bench_rounds")
        self._env: dict[str, dict] = {}

    def env(self, device: str) -> dict:
        if device not in self._env:
            self._env[device] = env_info(device)
        return dict(self._env[device], threads=torch.get_num_threads())

    def rounds(self, device: str, default: int | None = None) -> int:
        return self._rounds or default or (20 if device == "cuda" else 5)


@pytest.fixture(scope="session")
def settings(pytestconfig: pytest.Config) -> Settings:
    return Settings(pytestconfig)
