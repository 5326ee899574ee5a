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
from .guards import NonFiniteLossError, TrainingStopped, check_finite, one_line
from .logging import CSVLogger, MetricLogger, plot_curves, read_csv
from .resume import CHANGEABLE_ON_RESUME, check_resume, config_differences, read_training_state
from .run_files import (
    DiskFullError,
    RunLock,
    clean_stale_temporaries,
    evict_lru,
    folder_mb,
    refuse_existing_run,
)
from .schedule import PolyLambda, PolyLR, poly_factor

__all__ = [
    "BEST",
    "CHANGEABLE_ON_RESUME",
    "LATEST",
    "CSVLogger",
    "CheckpointManager",
    "DiskFullError",
    "MetricLogger",
    "NonFiniteLossError",
    "PolyLR",
    "PolyLambda",
    "RunLock",
    "TrainingStopped",
    "all_reduce_mean",
    "atomic_copy",
    "atomic_save",
    "barrier",
    "capture_rng_state",
    "check_finite",
    "check_resume",
    "clean_stale_temporaries",
    "cleanup",
    "config_differences",
    "convert_sync_bn",
    "evict_lru",
    "folder_mb",
    "init_distributed",
    "is_distributed",
    "is_main",
    "load_checkpoint",
    "one_line",
    "local_rank",
    "plot_curves",
    "poly_factor",
    "rank",
    "read_csv",
    "read_training_state",
    "refuse_existing_run",
    "restore_rng_state",
    "world_size",
]
