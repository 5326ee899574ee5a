"""``python -m sstkd_ops``: show what this installation can run."""

import json

import torch

from ._backend import available_backends, build_info

if __name__ == "__main__":
    info = build_info()
    print(json.dumps(info, indent=1, default=str))
    print("backends for CPU tensors :", ", ".join(available_backends("cpu")))
    if torch.cuda.is_available():
        print("backends for CUDA tensors:", ", ".join(available_backends("cuda")))
