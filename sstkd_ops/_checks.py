"""Input validation shared by the public ops.

Every public op validates its arguments at the boundary and raises ``TypeError`` or
``ValueError`` with a message of the form ``"<function>: argument '<name>' expected <what>,
got <what came>"``. Nothing here uses ``assert``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)

# Data-dependent input checks (NaN / Inf) cost a device synchronisation, so the fast paths run
# them only when asked: SSTKD_CHECK_FINITE=1 in the environment or set_finite_checks(True).
_finite_checks = os.environ.get("SSTKD_CHECK_FINITE", "0").strip() not in ("", "0")


def _dtype_names(dtypes: Iterable[torch.dtype]) -> str:
    return " or ".join(str(d).replace("torch.", "") for d in dtypes)


def check_tensor(
    fn: str,
    name: str,
    x: object,
    *,
    ndim: int | None = None,
    dtypes: Sequence[torch.dtype] = FLOAT_DTYPES,
    min_size: Sequence[int] | None = None,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the given rank and dtype; return it.

    ``min_size`` gives, per dimension, the smallest allowed extent (``None`` for no bound).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: argument '{name}' expected a torch.Tensor, got {type(x).__name__}")
    if ndim is not None and x.dim() != ndim:
        raise ValueError(
            f"{fn}: argument '{name}' expected a {ndim}-D tensor, got shape {tuple(x.shape)} "
            f"({x.dim()}-D)"
        )
    if dtypes and x.dtype not in dtypes:
        raise TypeError(
            f"{fn}: argument '{name}' expected dtype {_dtype_names(dtypes)}, got {x.dtype}"
        )
    if min_size is not None:
        for dim, lo in enumerate(min_size):
            if lo is not None and x.shape[dim] < lo:
                raise ValueError(
                    f"{fn}: argument '{name}' expected size >= {lo} in dimension {dim}, got "
                    f"shape {tuple(x.shape)}"
                )
    return x


def check_same_device(fn: str, tensors: dict[str, torch.Tensor]) -> torch.device:
    """Check that all ``tensors`` (argument name -> tensor) live on one device; return it."""
    items = list(tensors.items())
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.device != first.device:
            raise ValueError(f"{fn}: argument '{name}' expected a tensor on {first.device} (the "
                             f"device of '{first_name}'), got {t.device}")
    return first.device


def check_int(
    fn: str, name: str, value: object, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Check that ``value`` is a Python int (not bool) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{fn}: argument '{name}' expected an int, got {type(value).__name__} "
                        f"({value!r})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{fn}: argument '{name}' expected an int >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{fn}: argument '{name}' expected an int <= {maximum}, got {value}")
    return value


def check_float(
    fn: str, name: str, value: object, *, minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Check that ``value`` is a real number within ``[minimum, maximum]``; return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{fn}: argument '{name}' expected a float, got {type(value).__name__} "
                        f"({value!r})")
    value = float(value)
    if value != value:
        raise ValueError(f"{fn}: argument '{name}' expected a finite float, got nan")
    if minimum is not None and value < minimum:
        raise ValueError(f"{fn}: argument '{name}' expected a value >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{fn}: argument '{name}' expected a value <= {maximum}, got {value}")
    return value


def check_choice(fn: str, name: str, value: object, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of the strings in ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{fn}: argument '{name}' expected one of {', '.join(repr(c) for c in choices)}, "
            f"got {value!r}"
        )
    return value


def set_finite_checks(enabled: bool) -> bool:
    """Turn the opt-in NaN/Inf checks of :func:`debug_check_finite` on or off.

    Returns the previous setting. The default comes from the environment variable
    ``SSTKD_CHECK_FINITE`` (``1``: on; unset or ``0``: off).
    """
    global _finite_checks
    if not isinstance(enabled, bool):
        raise TypeError(f"set_finite_checks: argument 'enabled' expected a bool, got "
                        f"{type(enabled).__name__} ({enabled!r})")
    previous, _finite_checks = _finite_checks, enabled
    return previous


def finite_checks_enabled() -> bool:
    """True when the opt-in NaN/Inf checks of :func:`debug_check_finite` run."""
    return _finite_checks


def debug_check_finite(fn: str, name: str, x: torch.Tensor, *,
                       derived: str | None = None) -> None:
    """:func:`check_finite` when the opt-in checks are on (:func:`set_finite_checks`), else
    nothing: the fast paths never synchronise with the device for a data-dependent check."""
    if _finite_checks:
        check_finite(fn, name, x, derived=derived)


def check_finite(fn: str, name: str, x: torch.Tensor, *, derived: str | None = None) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or Inf (one device sync).

    ``derived``: what ``x`` is when it was computed from argument ``name`` (the message names
    both). Skipped while ``torch.compile`` traces: a data-dependent check cannot be traced
    (the compiled kernels raise ``RuntimeError`` on non-finite values instead).
    """
    if torch.compiler.is_compiling():
        return
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        if derived is not None:
            raise ValueError(f"{fn}: argument '{name}' expected finite values, got NaN/Inf (the "
                             f"{derived} of {n_bad} pixels is not finite)")
        raise ValueError(
            f"{fn}: argument '{name}' expected finite values, got {n_bad} NaN/Inf entries "
            f"(shape {tuple(x.shape)})"
        )
