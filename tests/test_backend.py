"""Backend selection and input checks shared by every op."""

import importlib.util

import pytest
import torch
from conftest import require

from sstkd_ops import _backend, _checks
from sstkd_ops._backend import BackendUnavailableError, select_backend


def test_auto_on_cpu_prefers_compiled_kernels(monkeypatch):
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    x = torch.zeros(1)
    expected = "cpu" if _backend.has_cpu_kernels() else "reference"
    assert select_backend("op", x, None, {"cpu", "triton"}) == expected
    # an op without a C++ kernel falls back to the reference, never to the Triton interpreter
    assert select_backend("op", x, "auto", {"triton"}) == "reference"


def test_deterministic_mode_skips_nondeterministic_backends(monkeypatch):
    require(_backend.has_cpu_kernels(), "compiled extension sstkd_ops._C not built")
    x = torch.zeros(1)
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    assert select_backend("op", x, None, {"cpu"}, nondeterministic={"cpu"}) == "reference"
    assert select_backend("op", x, None, {"cpu"}) == "cpu"


def test_environment_variable_overrides_auto(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "reference")
    assert select_backend("op", torch.zeros(1), None, {"cpu"}) == "reference"
    monkeypatch.setenv(_backend.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="SSTKD_BACKEND.*'fastest'"):
        select_backend("op", torch.zeros(1), None, {"cpu"})


def test_unknown_backend_argument_is_named():
    with pytest.raises(ValueError, match=r"myop: argument 'backend' expected one of .* got 'gpu'"):
        select_backend("myop", torch.zeros(1), "gpu", {"cpu"})


def test_forced_backend_not_implemented():
    with pytest.raises(BackendUnavailableError, match="'cuda' is not implemented for this op"):
        select_backend("myop", torch.zeros(1), "cuda", {"cpu"})


def test_forced_cuda_on_cpu_tensor_says_why():
    with pytest.raises(BackendUnavailableError, match="needs a CUDA tensor"):
        select_backend("myop", torch.zeros(1), "cuda", {"cuda"})


def test_missing_extension_says_how_to_build(monkeypatch):
    monkeypatch.setattr(_backend, "_load_extension", lambda: (None, "ImportError: no _C"))
    with pytest.raises(BackendUnavailableError, match="pip install --no-build-isolation -e ."):
        select_backend("myop", torch.zeros(1), "cpu", {"cpu"})
    assert select_backend("myop", torch.zeros(1), "auto", {"cpu"}) == "reference"


def test_triton_on_cpu_needs_interpreter(monkeypatch):
    require(_backend.has_triton(), "triton not installed")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="TRITON_INTERPRET=1"):
        select_backend("myop", torch.zeros(1), "triton", {"triton"})
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert select_backend("myop", torch.zeros(1), "triton", {"triton"}) == "triton"


def test_available_backends_lists_reference_last():
    names = _backend.available_backends("cpu")
    assert names[-1] == "reference"
    assert "cuda" not in names or torch.cuda.is_available()


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def test_build_info_reports_extension_state():
    """build_info against facts found without sstkd_ops: importing the extension and Triton."""
    info = _backend.build_info()
    extension = _importable("sstkd_ops._C")
    assert info["extension"] is extension
    assert (info["extension_error"] == "") is extension
    assert info["triton"] is (importlib.util.find_spec("triton") is not None)
    assert info["torch"] == torch.__version__


@pytest.mark.parametrize(
    "call, exc, pattern",
    [
        (lambda: _checks.check_tensor("f", "x", [1.0]), TypeError,
         "f: argument 'x' expected a torch.Tensor, got list"),
        (lambda: _checks.check_tensor("f", "x", torch.zeros(2, 3), ndim=4), ValueError,
         r"expected a 4-D tensor, got shape \(2, 3\)"),
        (lambda: _checks.check_tensor("f", "x", torch.zeros(2, dtype=torch.int64)), TypeError,
         "expected dtype float32 or float64, got torch.int64"),
        (lambda: _checks.check_tensor("f", "x", torch.zeros(1, 2), min_size=(None, 3)),
         ValueError, r"expected size >= 3 in dimension 1"),
        (lambda: _checks.check_int("f", "n", 2.0), TypeError, "expected an int, got float"),
        (lambda: _checks.check_int("f", "n", True), TypeError, "expected an int, got bool"),
        (lambda: _checks.check_int("f", "n", 0, minimum=1), ValueError, "expected an int >= 1"),
        (lambda: _checks.check_float("f", "t", float("nan")), ValueError, "finite"),
        (lambda: _checks.check_float("f", "t", 2.0, maximum=1.0), ValueError, "<= 1.0, got 2.0"),
        (lambda: _checks.check_choice("f", "mode", "x", ("a", "b")), ValueError,
         "expected one of 'a', 'b', got 'x'"),
        (lambda: _checks.check_finite("f", "x", torch.tensor([1.0, float("inf")])), ValueError,
         "1 NaN/Inf"),
    ],
)
def test_checks_name_argument_expected_and_received(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_disable_list_keeps_auto_away_but_not_an_explicit_choice(monkeypatch):
    require(_backend.has_cpu_kernels(), "compiled extension sstkd_ops._C not built")
    x = torch.zeros(1)
    monkeypatch.setenv(_backend.DISABLE_ENV_VAR, "cpu:myop, triton:*")
    assert select_backend("myop", x, None, {"cpu"}) == "reference"
    assert select_backend("other", x, None, {"cpu"}) == "cpu"
    assert select_backend("myop", x, "cpu", {"cpu"}) == "cpu"
    assert _backend.disabled_backends("other") == {"triton"}
    monkeypatch.setenv(_backend.DISABLE_ENV_VAR, "cpu:*")
    assert select_backend("other", x, None, {"cpu"}) == "reference"


@pytest.mark.parametrize("spec", ["cuda", "gpu:pdfb_dec", "reference:qco_1d", "cuda:"])
def test_disable_list_rejects_malformed_entries(monkeypatch, spec):
    monkeypatch.setenv(_backend.DISABLE_ENV_VAR, spec)
    with pytest.raises(ValueError, match=f"SSTKD_DISABLE expected .* got '{spec}'"):
        select_backend("myop", torch.zeros(1), None, {"cpu"})
