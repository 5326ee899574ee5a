"""The kernels' constants are defined once per language and agree: ``csrc/constants.h`` (C++ and
CUDA), ``sstkd_ops/constants.py`` (reference and Triton), and what the compiled module was
built with."""

import re

import pytest
from conftest import REPO, requires

from sstkd_ops import _backend, constants

HEADER = REPO / "csrc" / "constants.h"
# C++ name -> Python name
NAMES = {"kMaxLevels": "MAX_LEVELS", "kNormEps": "NORM_EPS", "kQco2dEps": "QCO2D_EPS"}


def _header_values() -> dict[str, float]:
    text = HEADER.read_text()
    found = dict(re.findall(r"inline constexpr (?:int64_t|double) (k\w+) = ([-+.\deE]+);", text))
    return {name: float(value) for name, value in found.items()}


def test_header_defines_exactly_the_python_constants():
    values = _header_values()
    assert set(values) == set(NAMES), f"csrc/constants.h defines {sorted(values)}"
    public = {n for n in vars(constants) if n.isupper()}
    assert public == set(NAMES.values()), f"sstkd_ops.constants defines {sorted(public)}"


@pytest.mark.parametrize("cxx, py", sorted(NAMES.items()))
def test_header_and_python_values_agree(cxx, py):
    assert _header_values()[cxx] == getattr(constants, py)


@requires(_backend.has_cpu_kernels(), reason="compiled extension sstkd_ops._C not built")
@pytest.mark.parametrize("py", sorted(NAMES.values()))
def test_compiled_module_was_built_with_the_python_values(py):
    assert getattr(_backend.extension(), py) == getattr(constants, py)


def test_public_constants_are_these():
    import sstkd_ops

    assert sstkd_ops.MAX_LEVELS is constants.MAX_LEVELS
