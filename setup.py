"""Builds the compiled extension ``sstkd_ops._C``.

Environment variables:
  SSTKD_NO_EXT=1      skip compilation entirely (pure-Python install; reference + Triton only)
  SSTKD_FORCE_CUDA=1  build the CUDA kernels even if torch has no CUDA device or version
  SSTKD_NO_CUDA=1     never build the CUDA kernels
By default the C++ CPU kernels are always built and the CUDA kernels are added when the
installed torch is a CUDA build and nvcc is found. The build prints what it decided.
"""

import glob
import json
import os

from setuptools import setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0", "false", "False")


def _say(msg: str) -> None:
    print(f"[sstkd build] {msg}", flush=True)


def _record(decision: dict) -> None:
    """Keep what the build decided beside the package (reported by sstkd_ops.build_info())."""
    with open(os.path.join("sstkd_ops", "_build.json"), "w") as f:
        json.dump(decision, f, indent=1)


def extension_kwargs() -> dict:
    if _flag("SSTKD_NO_EXT"):
        _say("SSTKD_NO_EXT set: pure-Python install, no compiled extension")
        _record({"extension": False, "reason": "SSTKD_NO_EXT set"})
        return {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    # csrc/module.cpp, then one folder per op family: its schema (csrc/<family>/*.cpp), C++
    # kernels (csrc/<family>/cpu/) and CUDA kernels (csrc/<family>/cuda/)
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/*/*.cpp")
                     + glob.glob("csrc/*/cpu/*.cpp"))
    cu_sources = sorted(glob.glob("csrc/*/cuda/*.cu"))
    if _flag("SSTKD_NO_CUDA"):
        use_cuda, why = False, "SSTKD_NO_CUDA set"
    elif _flag("SSTKD_FORCE_CUDA"):
        use_cuda, why = True, "SSTKD_FORCE_CUDA set"
    elif torch.version.cuda is None:
        use_cuda, why = False, f"torch {torch.__version__} is a CPU build"
    elif CUDA_HOME is None:
        use_cuda, why = False, "nvcc / CUDA_HOME not found"
    else:
        use_cuda, why = True, f"torch CUDA {torch.version.cuda}, CUDA_HOME={CUDA_HOME}"
    # no contraction into FMA: the CPU kernels built per instruction set (csrc/linprog/cpu/
    # plane_kernels.h) must round alike
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off"]
    if use_cuda:
        ext = CUDAExtension(
            "sstkd_ops._C",
            sources + cu_sources,
            define_macros=[("SSTKD_WITH_CUDA", "1")],
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++20"]},
            extra_link_args=["-fopenmp"],
        )
    else:
        ext = CppExtension("sstkd_ops._C", sources, extra_compile_args={"cxx": cxx},
                           extra_link_args=["-fopenmp"])
    _say(f"C++ CPU kernels: {len(sources)} sources; CUDA kernels: "
         f"{'yes' if use_cuda else 'no'} ({why})")
    _record({"extension": True, "cpu_sources": sources, "cuda": use_cuda, "cuda_reason": why,
             "cuda_sources": cu_sources if use_cuda else [], "torch": torch.__version__})
    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildExtension}}


setup(**extension_kwargs())
