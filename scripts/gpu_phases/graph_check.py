"""GPU-only checks of phase 2: ``compute-sanitizer --tool memcheck`` on a small case of every
CUDA kernel, and one training step's texture losses (structural + statistical, forward and
backward through the fused ops) captured in a CUDA graph, per backend.

``python scripts/gpu_phases/graph_check.py small-cuda`` runs the sanitizer's case;
``... graph BACKEND`` the capture (prints one JSON line).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.gpu_phases.common import python, run  # noqa: E402


def small_cuda() -> None:
    """Every op on the 'cuda' backend, forward and backward, float32 and float64, tiny."""
    import torch

    from scripts.gpu_phases import parity_cases as pc

    for dtype in (torch.float32, torch.float64):
        for op in pc.OPS:
            shape = (1, 2, 16, 16) if op != "qco_2d" else (1, 2, 8, 8)
            pc._run(op, "cuda", pc._inputs(op, shape, dtype, "cuda"), False)
    torch.cuda.synchronize()
    print("small-cuda: done")


def graph(backend: str) -> dict:
    """Capture ``TextureDistiller`` forward + backward in a CUDA graph, replay, compare."""
    import torch

    from sstkd.distill.texture import TextureDistiller

    torch.manual_seed(0)
    tex = TextureDistiller({"layer1": 64}, {"layer1": 256}, nlevs=(3, 3),
                           backend=None if backend == "auto" else backend).cuda()
    s = torch.randn(2, 64, 64, 64, device="cuda", requires_grad=True)
    t = torch.randn(2, 256, 64, 64, device="cuda")

    def step():
        losses = tex({"layer1": s}, {"layer1": t})
        total = losses["str"] + losses["sta"]
        total.backward()
        return total

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            s.grad = None
            eager = step().detach().clone()
    torch.cuda.current_stream().wait_stream(side)
    s.grad = None
    g = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(g):
            total = step()
        g.replay()
        torch.cuda.synchronize()
    except Exception as exc:  # what the capture says is the result
        return {"status": "fail", "error": f"{type(exc).__name__}: {exc}"[:1500]}
    ok = bool(torch.allclose(total, eager, rtol=1e-4, atol=1e-6) and s.grad is not None
              and torch.isfinite(s.grad).all())
    return {"status": "pass" if ok else "fail", "replayed_loss": float(total),
            "eager_loss": float(eager)}


def run_all(out: Path, deadline: float) -> dict:
    """The graph capture per backend, then the sanitizer (when installed and time is left);
    each guarded. A sanitizer run that does not fit is reported as skipped."""
    res = {}
    for be in ("auto", "cuda", "triton"):
        left = deadline - time.time()
        if left < 10:
            res[f"cuda_graph_{be}"] = {"status": "skipped", "why": "no time left"}
            continue
        r = run([python(), __file__, "graph", be], out / f"cuda_graph_{be}.log", min(30, left))
        line = [ln for ln in r["tail"].splitlines() if ln.startswith("{")]
        res[f"cuda_graph_{be}"] = json.loads(line[-1]) if line else {
            "status": "timeout" if r["timed_out"] else "fail", "error": r["tail"][-1500:]}
    sanitizer = shutil.which("compute-sanitizer") or next(
        (p for p in ("/usr/local/cuda/bin/compute-sanitizer",) if Path(p).exists()), None)
    left = deadline - time.time()
    if sanitizer is None or left < 20:
        why = "compute-sanitizer not found" if sanitizer is None else "no time left"
        res["compute_sanitizer"] = {"status": "skipped", "why": why}
        return res
    r = run([sanitizer, "--tool", "memcheck", "--error-exitcode", "3", python(), __file__,
             "small-cuda"], out / "compute_sanitizer.log", left)
    summary = [ln for ln in r["tail"].splitlines() if "ERROR SUMMARY" in ln]
    res["compute_sanitizer"] = {
        "status": "skipped" if r["timed_out"] else ("pass" if r["rc"] == 0 else "fail"),
        "why": f"did not finish in {left:.0f} s" if r["timed_out"] else "",
        "summary": summary[-1] if summary else r["tail"][-800:], "seconds": r["seconds"]}
    return res


if __name__ == "__main__":
    if sys.argv[1:2] == ["small-cuda"]:
        small_cuda()
    elif sys.argv[1:2] == ["graph"]:
        print(json.dumps(graph(sys.argv[2])), flush=True)
    else:
        raise SystemExit("usage: graph_check.py small-cuda | graph BACKEND")
