"""Losses against hand-computed values on tiny tensors, plus their input checks."""

from __future__ import annotations

import math

import pytest
import torch

from sstkd.losses import (
    Discriminator,
    HolisticAdversary,
    channelwise_kd_loss,
    cosine_affinity,
    gradient_penalty,
    ohem_cross_entropy,
    pairwise_affinity_loss,
    pixelwise_kd_loss,
    pooled_patches,
    segmentation_loss,
)

LN3 = math.log(3.0)


def t(values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


# ----------------------------------------------------------------------------- pixel-wise KD
def _kd_pair():
    # pixel 0: teacher uniform, student (1/4, 3/4); pixel 1: identical -> KL 0
    teacher = t([[[[0.0, 0.0]], [[0.0, 0.0]]]])            # (1, 2, 1, 2)
    student = t([[[[0.0, 1.0]], [[LN3, 1.0]]]])
    return student, teacher


def test_pixelwise_kd_hand_value():
    s, te = _kd_pair()
    expected = 0.5 * math.log(4 / 3) / 2  # KL at pixel 0 = 0.5 ln(4/3); mean over 2 pixels
    assert pixelwise_kd_loss(s, te).item() == pytest.approx(expected, rel=1e-12)


def test_pixelwise_kd_temperature():
    s, te = _kd_pair()
    r3 = math.sqrt(3.0)  # student at tau 2: softmax(0, ln3 / 2) = (1, sqrt 3) / (1 + sqrt 3)
    kl0 = 0.5 * math.log(0.5 * (1 + r3)) + 0.5 * math.log(0.5 * (1 + r3) / r3)
    assert pixelwise_kd_loss(s, te, tau=2.0).item() == pytest.approx(kl0 / 2 * 4, rel=1e-12)


def test_pixelwise_kd_ignore_mask_and_gradient():
    s, te = _kd_pair()
    s.requires_grad_(True)
    loss = pixelwise_kd_loss(s, te, ignore_mask=torch.tensor([[[False, True]]]))
    assert loss.item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-12)
    loss.backward()
    assert s.grad[..., 1].abs().max() == 0  # ignored pixel gets no gradient
    all_ignored = pixelwise_kd_loss(s, te, ignore_mask=torch.ones(1, 1, 2, dtype=torch.bool))
    assert all_ignored.item() == 0.0


def test_pixelwise_kd_resizes_student():
    teacher = torch.randn(2, 3, 4, 4)
    student = torch.randn(2, 3, 1, 1)  # constant map after bilinear resizing
    expected = pixelwise_kd_loss(student.expand(2, 3, 4, 4), teacher)
    torch.testing.assert_close(pixelwise_kd_loss(student, teacher), expected)


@pytest.mark.parametrize("student,msg", [
    (torch.zeros(3, 2, 1, 2), "batch sizes differ"),
    (torch.zeros(1, 3, 1, 2), "channel counts differ"),
    (torch.zeros(2, 1, 2), "student must have shape"),
])
def test_pixelwise_kd_bad_input(student, msg):
    with pytest.raises(ValueError, match=msg):
        pixelwise_kd_loss(student, torch.zeros(1, 2, 1, 2))


def test_pixelwise_kd_bad_tau_and_mask():
    s, te = _kd_pair()
    with pytest.raises(ValueError, match="tau must be a positive number"):
        pixelwise_kd_loss(s, te, tau=0)
    with pytest.raises(ValueError, match=r"ignore_mask must be .* \(1, 1, 2\)"):
        pixelwise_kd_loss(s, te, ignore_mask=torch.zeros(1, 2, 2, dtype=torch.bool))


# ----------------------------------------------------------------------------- channel-wise
def test_channelwise_hand_value():
    tau = 4.0
    teacher = t([[[[0.0, 0.0]], [[1.0, 2.0]]]])                 # (1, 2, 1, 2)
    student = t([[[[0.0, tau * LN3]], [[1.0, 2.0]]]])          # channel 0: (1/4, 3/4)
    expected = 0.5 * math.log(4 / 3) * tau ** 2 / 2            # KL summed, / (B * C), * tau^2
    assert channelwise_kd_loss(student, teacher, tau).item() == pytest.approx(expected, rel=1e-12)


def test_channelwise_zero_and_checks():
    x = torch.randn(2, 3, 5, 4)
    assert channelwise_kd_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="channel counts differ"):
        channelwise_kd_loss(torch.zeros(2, 4, 5, 4), x)


# ----------------------------------------------------------------------------- pair-wise
def test_pairwise_hand_value():
    student = t([[[[1.0, 0.0]], [[0.0, 1.0]]]])                     # positions (1,0), (0,1)
    teacher = t([[[[1.0, 2.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])       # both along e1
    torch.testing.assert_close(cosine_affinity(student), t([[[1.0, 0.0], [0.0, 1.0]]]))
    loss = pairwise_affinity_loss(student, teacher, scale=None, patch_size=1)
    assert loss.item() == pytest.approx(0.5, rel=1e-12)  # (0 + 1 + 1 + 0) / 4


def test_pooled_patches_grid():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(pooled_patches(x), torch.tensor([[[[5.0, 7.0], [13.0, 15.0]]]]))
    assert pooled_patches(torch.zeros(1, 2, 5, 5)).shape == (1, 2, 3, 3)  # kernel 2, ceil mode
    assert pooled_patches(torch.zeros(1, 2, 6, 6), None, 4).shape == (1, 2, 2, 2)


def test_pairwise_checks():
    with pytest.raises(ValueError, match="exactly one of scale and patch_size"):
        pairwise_affinity_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), 0.5, 2)
    with pytest.raises(ValueError, match="batch sizes differ"):
        pairwise_affinity_loss(torch.zeros(2, 2, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="scale must be in"):
        pairwise_affinity_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4), scale=2.0)


# ----------------------------------------------------------------------------- adversarial
def test_gradient_penalty_linear_critic():
    w = t([[[[2.0, 1.0]], [[2.0, 0.0]]]])  # ||w|| = 3 -> GP = (3 - 1)^2 = 4
    real, fake = torch.randn(3, 2, 1, 2, dtype=torch.float64), torch.zeros(3, 2, 1, 2,
                                                                            dtype=torch.float64)
    gp = gradient_penalty(lambda x: (x * w).sum(dim=(1, 2, 3)), real, fake)
    assert gp.item() == pytest.approx(4.0, rel=1e-12)
    with pytest.raises(ValueError, match="real and fake shapes differ"):
        gradient_penalty(lambda x: x.sum(), real, fake[:1])


def test_critic_step_loss_value_and_update():
    torch.manual_seed(0)
    adv = HolisticAdversary(3, use_image=True, spectral_norm=False, base_channels=4,
                            num_layers=2, gp_lambda=0.0)
    te, st, img = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 16, 16)
    d = adv.discriminator
    with torch.no_grad():
        real = adv._inputs("test", te, img)
        fake = adv._inputs("test", st, img)
        expected = (d(fake).mean() - d(real).mean()).item()
    before = [p.detach().clone() for p in d.parameters()]
    out = adv.critic_step(te, st, img)
    assert out["d_loss"].item() == pytest.approx(expected, rel=1e-5)
    assert out["wasserstein"].item() == pytest.approx(-expected, rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(before, d.parameters(), strict=True))


def test_generator_loss_gradients_and_state_round_trip():
    torch.manual_seed(0)
    adv = HolisticAdversary(3, base_channels=4, num_layers=2)
    te, img = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    st = torch.randn(2, 3, 8, 8, requires_grad=True)
    adv.critic_step(te, st.detach(), img)  # with spectral norm and GP
    adv.discriminator.zero_grad(set_to_none=True)
    flags = [p.requires_grad for p in adv.discriminator.parameters()]
    loss = adv.generator_loss(st, img)
    loss.backward()
    assert st.grad is not None and st.grad.abs().sum() > 0
    # the generator loss leaves the critic without gradients and with its flags restored
    assert all(p.grad is None for p in adv.discriminator.parameters())
    assert [p.requires_grad for p in adv.discriminator.parameters()] == flags
    other = HolisticAdversary(3, base_channels=4, num_layers=2)
    other.load_state_dict(adv.state_dict())
    adv.train(False), other.train(False)
    torch.testing.assert_close(other.generator_loss(st, img), adv.generator_loss(st, img))


def test_adversary_checks():
    adv = HolisticAdversary(3, base_channels=4, num_layers=1)
    with pytest.raises(ValueError, match="image is required"):
        adv.generator_loss(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="expected logits with 3 classes"):
        adv.generator_loss(torch.zeros(1, 4, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="batch sizes differ"):
        adv.critic_step(torch.zeros(2, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        Discriminator(0)


# ----------------------------------------------------------------------------- segmentation
def test_segmentation_loss_hand_value_with_aux():
    logits = torch.zeros(1, 2, 1, 3, dtype=torch.float64)          # CE = ln 2 everywhere
    aux = t([[[[0.0, 0.0, 0.0]], [[LN3, LN3, LN3]]]])             # p = (1/4, 3/4)
    target = torch.tensor([[[0, 1, 255]]])
    aux_ce = (-math.log(0.25) - math.log(0.75)) / 2
    loss = segmentation_loss(logits, target, aux)
    assert loss.item() == pytest.approx(math.log(2) + 0.4 * aux_ce, rel=1e-12)


def test_segmentation_loss_upsamples_and_all_ignored():
    logits = torch.zeros(1, 2, 1, 1, requires_grad=True)
    assert segmentation_loss(logits, torch.zeros(1, 4, 4, dtype=torch.long)).item() == \
        pytest.approx(math.log(2))
    empty = segmentation_loss(logits, torch.full((1, 4, 4), 255))
    assert empty.item() == 0.0
    empty.backward()


def test_ohem_hand_value():
    # true-class probabilities 1/4, 1/2, 3/4 at three pixels (two classes)
    logits = t([[[[0.0, 0.0, 0.0]], [[LN3, 0.0, -LN3]]]])
    target = torch.tensor([[[0, 0, 0]]])
    ce = [-math.log(0.25), -math.log(0.5), -math.log(0.75)]
    # min_kept 0: threshold max(1/4, 0.7) = 0.7 -> keep p = 1/4, 1/2
    assert ohem_cross_entropy(logits, target, thresh=0.7, min_kept=0).item() == \
        pytest.approx((ce[0] + ce[1]) / 2, rel=1e-12)
    # min_kept 1: threshold max(1/2, 0.3) = 1/2 -> keep p = 1/4 only
    assert ohem_cross_entropy(logits, target, thresh=0.3, min_kept=1).item() == \
        pytest.approx(ce[0], rel=1e-12)
    loss = segmentation_loss(logits, target, ohem=True, ohem_thresh=0.3, ohem_min_kept=1)
    assert loss.item() == pytest.approx(ce[0], rel=1e-12)


def test_segmentation_loss_checks():
    with pytest.raises(ValueError, match=r"target must have shape \(B, H, W\) with B = 1"):
        segmentation_loss(torch.zeros(1, 2, 2, 2), torch.zeros(2, 2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="target must be an integer tensor"):
        segmentation_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="aux_logits must match logits"):
        segmentation_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long),
                          torch.zeros(1, 3, 2, 2))
