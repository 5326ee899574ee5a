"""Learning-rate schedule: poly decay with an optional linear warm-up."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR


def poly_factor(step: int, max_iters: int, power: float = 0.9, warmup_iters: int = 0,
                warmup_factor: float = 0.1) -> float:
    """LR multiplier at ``step``: ``(1 - step / max_iters) ** power`` times the warm-up ramp.

    The warm-up ramp rises linearly from ``warmup_factor`` at step 0 to 1 at ``warmup_iters``
    (mmsegmentation's "linear" warm-up on top of the regular schedule). Steps at or past
    ``max_iters`` give 0.

    Example:
        >>> poly_factor(50, 100, power=1.0)
        0.5
    """
    if step >= max_iters:
        return 0.0
    factor = (1.0 - step / max_iters) ** power
    if step < warmup_iters:
        factor *= warmup_factor + (1.0 - warmup_factor) * step / warmup_iters
    return factor


class PolyLambda:
    """Picklable ``step -> factor`` callable of :func:`poly_factor` (so the state can be saved)."""

    def __init__(self, max_iters: int, power: float = 0.9, warmup_iters: int = 0,
                 warmup_factor: float = 0.1):
        self.max_iters = max_iters
        self.power = power
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor

    def __call__(self, step: int) -> float:
        return poly_factor(step, self.max_iters, self.power, self.warmup_iters,
                           self.warmup_factor)


class PolyLR(LambdaLR):
    """Poly LR schedule with optional linear warm-up; call ``step()`` after each optimizer step.

    The LR of every parameter group is ``base_lr * poly_factor(step, ...)``. ``state_dict()``
    holds the step and the schedule's settings (restored by ``load_state_dict``).

    Args:
        optimizer: the optimizer whose groups' ``initial_lr`` are the base LRs.
        max_iters: total iterations (the LR reaches 0 there).
        power: poly exponent (0.9).
        warmup_iters: linear warm-up length (0 disables it).
        warmup_factor: LR multiplier at step 0 of the warm-up, in (0, 1].
        last_epoch: index of the last step taken (-1 for a new schedule).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        >>> sched = PolyLR(opt, max_iters=100, power=1.0)
        >>> opt.step(); sched.step(); round(opt.param_groups[0]["lr"], 6)
        0.0099
    """

    def __init__(self, optimizer: torch.optim.Optimizer, max_iters: int, power: float = 0.9,
                 warmup_iters: int = 0, warmup_factor: float = 0.1, last_epoch: int = -1):
        fn = "PolyLR"
        if isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1:
            raise ValueError(f"{fn}: max_iters must be a positive int, got {max_iters!r}")
        if not isinstance(power, (int, float)) or power < 0:
            raise ValueError(f"{fn}: power must be a number >= 0, got {power!r}")
        if isinstance(warmup_iters, bool) or not isinstance(warmup_iters, int) or \
                not 0 <= warmup_iters < max_iters:
            raise ValueError(f"{fn}: warmup_iters must be an int in [0, max_iters={max_iters}), "
                             f"got {warmup_iters!r}")
        if not 0 < warmup_factor <= 1:
            raise ValueError(f"{fn}: warmup_factor must be in (0, 1], got {warmup_factor!r}")
        super().__init__(optimizer, PolyLambda(max_iters, power, warmup_iters, warmup_factor),
                         last_epoch)
