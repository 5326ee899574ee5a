"""The phases of ``scripts/gpu_run.py``; each module runs as its own process (``--out DIR``)."""
