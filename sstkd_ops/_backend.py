"""The one place that decides which backend runs an op, and the loading of the compiled ``_C``.

Every public op has a table ``backend -> implementation`` and calls :func:`dispatch`.

Backends:

* ``"reference"`` -- plain PyTorch (any device, any float dtype); the oracle for every fast
  path and the fallback.
* ``"cpu"`` -- C++ kernels of the compiled extension ``sstkd_ops._C`` (CPU tensors).
* ``"cuda"`` -- CUDA kernels of the same extension, when it was built with CUDA (CUDA tensors).
* ``"triton"`` -- Triton kernels (CUDA tensors; CPU tensors only under ``TRITON_INTERPRET=1``).
* ``"auto"`` -- the fastest one available for the tensor's device, in the order
  cuda > triton > cpu > reference.

The choice comes from the op's ``backend=`` argument, else from the environment variable
``SSTKD_BACKEND``, else ``"auto"``. Forcing a backend that is not available raises
:class:`BackendUnavailableError`, which says how to get it.

``SSTKD_DISABLE`` keeps ``auto`` away from backends known to fail for an op on this machine
(e.g. written from the ``disable`` list of ``scripts/gpu_run.py``'s ``gpu_parity.json``): a
comma-separated list of ``backend:op`` entries, ``op`` may be ``*``, e.g.
``SSTKD_DISABLE=cuda:pdfb_dec,triton:*``. It only changes what ``auto`` picks; a backend named
explicitly still runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Collection
from pathlib import Path

import torch

BACKENDS = ("auto", "reference", "cpu", "triton", "cuda")
ENV_VAR = "SSTKD_BACKEND"
DISABLE_ENV_VAR = "SSTKD_DISABLE"
_AUTO_ORDER = ("cuda", "triton", "cpu", "reference")

_BUILD_HINT = (
    "build the compiled extension from the repository root with "
    "`pip install --no-build-isolation -e .` (set SSTKD_FORCE_CUDA=1 to force the CUDA kernels, "
    "and make sure SSTKD_NO_EXT is not set)"
)


class BackendUnavailableError(RuntimeError):
    """A backend was requested explicitly but cannot run here."""


def _import_extension() -> tuple[object | None, str]:
    try:
        module = importlib.import_module("sstkd_ops._C")
    except ImportError as exc:  # not built, or built against another torch
        return None, f"{type(exc).__name__}: {exc}"
    return module, ""


# Resolved once at import, so that dispatch inside torch.compile'd code is plain reads.
_EXTENSION, _EXTENSION_ERROR = _import_extension()
_HAS_TRITON = importlib.util.find_spec("triton") is not None


def _load_extension() -> tuple[object | None, str]:
    return _EXTENSION, _EXTENSION_ERROR


def extension():
    """Return the compiled module ``sstkd_ops._C`` or ``None`` when it is not built."""
    return _load_extension()[0]


def extension_error() -> str:
    """Why the compiled extension could not be imported ('' when it was)."""
    return _load_extension()[1]


def has_cpu_kernels() -> bool:
    return extension() is not None


def has_cuda_kernels() -> bool:
    ext = extension()
    return bool(ext is not None and getattr(ext, "with_cuda", False) and torch.cuda.is_available())


def has_triton() -> bool:
    """Whether Triton is installed (not imported until a Triton kernel is used)."""
    return _HAS_TRITON


def triton_interpreted() -> bool:
    """True when Triton kernels run on the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _available(backend: str, device: torch.device) -> tuple[bool, str]:
    if backend == "reference":
        return True, ""
    if backend == "cpu":
        if device.type != "cpu":
            return False, f"the 'cpu' backend needs a CPU tensor, got a tensor on {device}"
        if not has_cpu_kernels():
            return False, (f"the compiled extension sstkd_ops._C is not available "
                           f"({extension_error()}); {_BUILD_HINT}")
        return True, ""
    if backend == "cuda":
        if device.type != "cuda":
            return False, f"the 'cuda' backend needs a CUDA tensor, got a tensor on {device}"
        ext = extension()
        if ext is None:
            return False, (f"the compiled extension sstkd_ops._C is not available "
                           f"({extension_error()}); {_BUILD_HINT}")
        if not getattr(ext, "with_cuda", False):
            return False, ("sstkd_ops._C was built without CUDA kernels; rebuild on a machine "
                           "with nvcc and a CUDA build of torch, or with SSTKD_FORCE_CUDA=1: "
                           "`SSTKD_FORCE_CUDA=1 pip install --no-build-isolation -e .`")
        return True, ""
    if backend == "triton":
        if not has_triton():
            return False, "Triton is not installed; `pip install triton==3.7.1`"
        if device.type == "cuda" or (device.type == "cpu" and triton_interpreted()):
            return True, ""
        return False, (f"the 'triton' backend needs a CUDA tensor (or TRITON_INTERPRET=1 for "
                       f"CPU tensors), got a tensor on {device}")
    raise ValueError(f"unknown backend {backend!r}")


def requested_backend(backend: str | None, fn: str = "sstkd_ops") -> str:
    """The backend asked for: the argument, else ``$SSTKD_BACKEND``, else ``"auto"``."""
    source = "argument 'backend'"
    if backend is None:
        backend = os.environ.get(ENV_VAR, "auto") or "auto"
        source = f"environment variable {ENV_VAR}"
    if backend not in BACKENDS:
        raise ValueError(
            f"{fn}: {source} expected one of {', '.join(repr(b) for b in BACKENDS)}, "
            f"got {backend!r}"
        )
    return backend


def _parse_disabled(spec: str) -> frozenset[tuple[str, str]]:
    entries = set()
    for item in filter(None, (p.strip() for p in spec.split(","))):
        backend, sep, op = item.partition(":")
        if not sep or not op or backend not in _AUTO_ORDER or backend == "reference":
            raise ValueError(
                f"sstkd_ops: environment variable {DISABLE_ENV_VAR} expected comma-separated "
                f"'backend:op' entries with backend one of 'cuda', 'triton', 'cpu' and op a name "
                f"or '*', got {item!r} in {spec!r}")
        entries.add((backend, op))
    return frozenset(entries)


def disabled_backends(fn: str) -> set[str]:
    """Backends that ``$SSTKD_DISABLE`` keeps ``auto`` from picking for op ``fn``."""
    spec = os.environ.get(DISABLE_ENV_VAR, "")
    if not spec:
        return set()
    return {b for b, op in _parse_disabled(spec) if op in (fn, "*")}


def select_backend(
    fn: str,
    x: torch.Tensor,
    backend: str | None,
    implemented: Collection[str],
    *,
    nondeterministic: Collection[str] = (),
) -> str:
    """Pick the backend that runs op ``fn`` on tensor ``x``.

    Args:
        fn: public name of the op (for messages).
        x: the main input; its device decides what ``auto`` may pick.
        backend: ``None`` (use ``$SSTKD_BACKEND`` or ``auto``) or one of :data:`BACKENDS`.
        implemented: backends this op has (``"reference"`` always implied).
        nondeterministic: backends whose results may vary run to run; ``auto`` skips them
            while ``torch.are_deterministic_algorithms_enabled()``.

    ``auto`` also skips the backends ``$SSTKD_DISABLE`` lists for ``fn``.

    Returns:
        The concrete backend name (never ``"auto"``).
    """
    wanted = requested_backend(backend, fn)
    have = set(implemented) | {"reference"}
    if wanted != "auto":
        if wanted not in have:
            raise BackendUnavailableError(
                f"{fn}: backend {wanted!r} is not implemented for this op; it has "
                f"{', '.join(repr(b) for b in _AUTO_ORDER if b in have)}"
            )
        ok, why = _available(wanted, x.device)
        if not ok:
            raise BackendUnavailableError(f"{fn}: backend {wanted!r} is unavailable: {why}")
        return wanted
    deterministic = torch.are_deterministic_algorithms_enabled()
    disabled = disabled_backends(fn)
    for candidate in _AUTO_ORDER:
        if candidate not in have or candidate in disabled:
            continue
        if candidate == "triton" and x.device.type != "cuda":
            continue  # the interpreter is for testing, never the fastest CPU path
        if deterministic and candidate in nondeterministic:
            continue
        if _available(candidate, x.device)[0]:
            return candidate
    return "reference"


def dispatch(fn: str, x: torch.Tensor, backend: str | None, implementations: dict[str, object]):
    """The implementation of op ``fn`` that runs ``x``: ``implementations[select_backend(...)]``.

    Every public op of every family keeps one table ``backend -> callable`` (always with a
    ``"reference"`` entry) and calls it through here, so the choice of backend is made in this
    module only (:func:`select_backend`).
    """
    return implementations[select_backend(fn, x, backend, implementations.keys())]


def available_backends(device: torch.device | str = "cpu") -> list[str]:
    """Backends that can run on ``device`` here, fastest first (``reference`` last)."""
    device = torch.device(device)
    return [b for b in _AUTO_ORDER if _available(b, device)[0]]


def build_info() -> dict[str, object]:
    """What this installation can run: extension, CUDA kernels, Triton, torch versions."""
    ext = extension()
    record = Path(__file__).with_name("_build.json")
    try:
        build = json.loads(record.read_text())
    except (OSError, ValueError):
        build = None
    return {
        "build": build,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "extension": ext is not None,
        "extension_error": extension_error(),
        "extension_with_cuda": bool(ext is not None and getattr(ext, "with_cuda", False)),
        # vector instructions of the C++ linear-program kernels (contourlet on the CPU)
        "cpu_isa": ext.cpu_isa() if ext is not None and hasattr(ext, "cpu_isa") else None,
        "cuda_device": torch.cuda.is_available(),
        "triton": has_triton(),
        "triton_interpret": triton_interpreted(),
    }
