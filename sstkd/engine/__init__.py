"""Model-independent training machinery: checkpoints, LR schedule, guards, logs, distribution."""

from .checkpoint_io import (
    BEST,
    LATEST,
    CheckpointManager,
    atomic_copy,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
)
from .distributed import (
    all_reduce_mean,
    barrier,
    cleanup,
    convert_sync_bn,
    init_distributed,
    is_distributed,
    is_main,
    local_rank,
    rank,
    world_size,
)
from .guards import NonFiniteLossError, check_finite
from .logging import CSVLogger, MetricLogger, plot_curves, read_csv
from .schedule import PolyLambda, PolyLR, poly_factor

__all__ = [
    "BEST",
    "LATEST",
    "CSVLogger",
    "CheckpointManager",
    "MetricLogger",
    "NonFiniteLossError",
    "PolyLR",
    "PolyLambda",
    "all_reduce_mean",
    "atomic_copy",
    "atomic_save",
    "barrier",
    "capture_rng_state",
    "check_finite",
    "cleanup",
    "convert_sync_bn",
    "init_distributed",
    "is_distributed",
    "is_main",
    "load_checkpoint",
    "local_rank",
    "plot_curves",
    "poly_factor",
    "rank",
    "read_csv",
    "restore_rng_state",
    "world_size",
]
