"""Holistic adversarial distillation (SKD / IFVD): a WGAN-GP critic on segmentation maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ._checks import check_4d, check_pair, check_positive


class Discriminator(nn.Module):
    """A small convolutional critic: stride-2 3x3 convs + LeakyReLU(0.1), then a 1-channel conv.

    Args:
        in_channels: ``K`` (class probabilities) plus 3 when the image is concatenated.
        base_channels: width of the first conv; doubled at every layer.
        num_layers: number of stride-2 convs (each halves H and W, rounding up).
        spectral_norm: wrap every conv in spectral normalisation (SAGAN / SKD style).

    Forward:
        ``(B, in_channels, H, W)`` -> ``(B,)`` critic scores (the last map's spatial mean).
    """

    def __init__(self, in_channels: int, base_channels: int = 64, num_layers: int = 4,
                 spectral_norm: bool = True):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("base_channels", base_channels),
                        ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Discriminator: {name} must be a positive int, got {v!r}")
        wrap = _spectral_norm if spectral_norm else (lambda m: m)
        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(num_layers):
            cout = base_channels * 2 ** i
            layers += [wrap(nn.Conv2d(cin, cout, 3, stride=2, padding=1)), nn.LeakyReLU(0.1)]
            cin = cout
        layers.append(wrap(nn.Conv2d(cin, 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_4d("Discriminator.forward", "x", x)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"Discriminator.forward: expected x with {self.in_channels} "
                             f"channels, got shape {tuple(x.shape)}")
        return self.net(x).mean(dim=(1, 2, 3))


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP penalty ``mean_b (||grad_x D(x_b)||_2 - 1)^2`` on interpolates of real and fake.

    Args:
        critic: maps ``(B, C, H, W)`` to ``(B,)`` scores.
        real: ``(B, C, H, W)``.
        fake: ``(B, C, H, W)``, same shape as ``real``.
        alpha: optional ``(B,)`` interpolation weights (uniform in [0, 1) when omitted);
            ``x = alpha * real + (1 - alpha) * fake``.

    Returns:
        scalar tensor, differentiable with respect to the critic's parameters.
    """
    fn = "gradient_penalty"
    check_4d(fn, "real", real)
    check_4d(fn, "fake", fake)
    if real.shape != fake.shape:
        raise ValueError(f"{fn}: real and fake shapes differ: real {tuple(real.shape)}, "
                         f"fake {tuple(fake.shape)}")
    b = real.shape[0]
    if alpha is None:
        alpha = torch.rand(b, device=real.device, dtype=real.dtype)
    elif alpha.shape != (b,):
        raise ValueError(f"{fn}: alpha must have shape (B,) = ({b},), got {tuple(alpha.shape)}")
    a = alpha.view(b, 1, 1, 1)
    x = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


class HolisticAdversary:
    """Owns the WGAN-GP critic of holistic distillation and its Adam optimizer.

    The teacher's segmentation map is "real", the student's "fake". Inputs to the critic are
    ``softmax(logits)`` (float32), concatenated with the image resized to the logits' size when
    ``use_image``. The critic runs in float32 with autocast disabled. Under ``torch.distributed``
    the critic's gradients are averaged over ranks before each step.

    Args:
        num_classes: ``K``.
        use_image: concatenate the image to the class probabilities (SKD's "(logits, image)").
        spectral_norm: spectral normalisation on the critic's convs.
        base_channels, num_layers: critic size, see :class:`Discriminator`.
        lr, betas: Adam settings (SKD: 4e-4, (0.9, 0.99)).
        gp_lambda: gradient-penalty weight (10).
        device: where the critic lives.

    Use per step (student update first, then the critic on detached logits)::

        loss = loss + w_ho * adversary.generator_loss(student_logits, image)
        ...
        adversary.critic_step(teacher_logits, student_logits.detach(), image)
    """

    def __init__(self, num_classes: int, use_image: bool = True, spectral_norm: bool = True,
                 base_channels: int = 64, num_layers: int = 4, lr: float = 4e-4,
                 betas: Sequence[float] = (0.9, 0.99), gp_lambda: float = 10.0,
                 device: torch.device | str | None = None):
        fn = "HolisticAdversary"
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"{fn}: num_classes must be a positive int, got {num_classes!r}")
        if gp_lambda < 0:
            raise ValueError(f"{fn}: gp_lambda must be >= 0, got {gp_lambda!r}")
        self.num_classes = num_classes
        self.use_image = use_image
        self.gp_lambda = float(gp_lambda)
        self.discriminator = Discriminator(num_classes + (3 if use_image else 0), base_channels,
                                           num_layers, spectral_norm).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(),
                                          lr=check_positive(fn, "lr", lr), betas=tuple(betas))

    def _inputs(self, fn: str, logits: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        x = F.softmax(check_4d(fn, "logits", logits).float(), dim=1)
        if x.shape[1] != self.num_classes:
            raise ValueError(f"{fn}: expected logits with {self.num_classes} classes, got shape "
                             f"{tuple(logits.shape)}")
        if not self.use_image:
            return x
        if image is None:
            raise ValueError(f"{fn}: image is required when use_image=True")
        image = check_4d(fn, "image", image)
        if image.shape[0] != x.shape[0] or image.shape[1] != 3:
            raise ValueError(f"{fn}: image must have shape (B, 3, H, W) with B = {x.shape[0]}, "
                             f"got {tuple(image.shape)}")
        image = image.float()
        if image.shape[-2:] != x.shape[-2:]:
            image = F.interpolate(image, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, image], dim=1)

    def critic_step(self, teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                    image: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One critic update: ``D(fake) - D(real) + gp_lambda * GP``, then an Adam step.

        Args:
            teacher_logits: ``(B, K, H, W)`` (real).
            student_logits: ``(B, K, h, w)`` (fake; detached here), resized to ``(H, W)``.
            image: ``(B, 3, H_i, W_i)`` when ``use_image``.

        Returns:
            detached scalars ``{'d_loss', 'gp', 'wasserstein'}`` (``D(real) - D(fake)``).
        """
        fn = "HolisticAdversary.critic_step"
        s, t = check_pair(fn, student_logits, teacher_logits)
        s, t = s.detach(), t.detach()
        dev = t.device.type
        with torch.autocast(device_type=dev, enabled=False):
            real = self._inputs(fn, t, image)
            fake = self._inputs(fn, s, image)
            d = self.discriminator
            d_real, d_fake = d(real).mean(), d(fake).mean()
            gp = gradient_penalty(d, real, fake) if self.gp_lambda > 0 else d_real.new_zeros(())
            loss = d_fake - d_real + self.gp_lambda * gp
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            n = dist.get_world_size()
            for p in d.parameters():
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(n)
        self.optimizer.step()
        return {"d_loss": loss.detach(), "gp": gp.detach(),
                "wasserstein": (d_real - d_fake).detach()}

    def generator_loss(self, student_logits: torch.Tensor,
                       image: torch.Tensor | None = None) -> torch.Tensor:
        """Adversarial loss of the student, ``-mean_b D(fake_b)``; no gradient reaches the critic.

        Args:
            student_logits: ``(B, K, H, W)``.
            image: ``(B, 3, H_i, W_i)`` when ``use_image``.

        Returns:
            scalar tensor, differentiable with respect to ``student_logits``.
        """
        fn = "HolisticAdversary.generator_loss"
        check_4d(fn, "student_logits", student_logits)
        params = list(self.discriminator.parameters())
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            with torch.autocast(device_type=student_logits.device.type, enabled=False):
                return -self.discriminator(self._inputs(fn, student_logits, image)).mean()
        finally:
            for p, f in zip(params, flags, strict=True):
                p.requires_grad_(f)

    def train(self, mode: bool = True) -> HolisticAdversary:
        """Set the critic's training mode (spectral-norm power iterations run in training)."""
        self.discriminator.train(mode)
        return self

    def state_dict(self) -> dict:
        """``{'discriminator': ..., 'discriminator_optimizer': ...}`` for checkpoints."""
        return {"discriminator": self.discriminator.state_dict(),
                "discriminator_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        missing = {"discriminator", "discriminator_optimizer"} - set(state)
        if missing:
            raise ValueError(f"HolisticAdversary.load_state_dict: missing keys {sorted(missing)}")
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["discriminator_optimizer"])
