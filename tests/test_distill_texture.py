"""SSTKD texture modules: losses against hand-computed values, gradients, bad input."""

import pytest
import torch
from conftest import require_backend

import sstkd_ops
from sstkd.distill import (
    ContourletDecomposition,
    TextureDistiller,
    TextureIntensityEqualization,
    statistical_loss,
    structural_loss,
)


def test_structural_loss_by_hand():
    low_s, low_t = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)           # MSE 1
    lvl0_s = [torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)]
    lvl0_t = [torch.full((1, 1, 2, 2), 2.0), torch.zeros(1, 1, 2, 2)]        # mean(4, 0) = 2
    lvl1_s = [torch.zeros(1, 1, 4, 4)] * 4
    lvl1_t = [torch.full((1, 1, 4, 4), 3.0)] + [torch.zeros(1, 1, 4, 4)] * 3  # mean(9,0,0,0)
    student, teacher = (low_s, [lvl0_s, lvl1_s]), (low_t, [lvl0_t, lvl1_t])
    loss = structural_loss(student, teacher, norm="none")
    assert float(loss) == pytest.approx(1.0 + 2.0 + 9.0 / 4)
    # 'energy': each subband's MSE over the teacher subband's energy (1; 4, 0; 9, 0, 0, 0) plus
    # eps = 1e-6 x their mean (2); the zero teacher subbands have zero error.
    eps = 1e-6 * (1 + 4 + 0 + 9 + 0 + 0 + 0) / 7
    expected = 1 / (1 + eps) + (4 / (4 + eps) + 0) / 2 + (9 / (9 + eps)) / 4
    loss = structural_loss(student, teacher)
    assert float(loss) == pytest.approx(expected, rel=1e-6)  # float32 tensors
    assert float(loss) == pytest.approx(1.75, rel=1e-5)
    with pytest.raises(ValueError, match="structural_loss: argument 'norm' expected one of"):
        structural_loss(student, teacher, norm="l2")


def test_structural_loss_energy_norm_ignores_the_feature_scale():
    g = torch.Generator().manual_seed(3)
    t = [torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    s = [torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    base = structural_loss((s[0], [s[1:]]), (t[0], [t[1:]]))
    for a in (1e-3, 7.0, 1e4):
        scaled = structural_loss((a * s[0], [[a * x for x in s[1:]]]),
                                 (a * t[0], [[a * x for x in t[1:]]]))
        torch.testing.assert_close(scaled, base, rtol=1e-12, atol=0)
    raw = structural_loss((10 * s[0], [[10 * x for x in s[1:]]]),
                          (10 * t[0], [[10 * x for x in t[1:]]]), norm="none")
    torch.testing.assert_close(raw, 100 * structural_loss((s[0], [s[1:]]), (t[0], [t[1:]]),
                                                          norm="none"))


def test_statistical_loss_by_hand():
    s = sstkd_ops.TextureStats(q=torch.zeros(2, 2, 2), cooc=torch.zeros(2, 1, 2, 2),
                               hist=torch.zeros(2, 2), levels=torch.zeros(2, 2))
    t = sstkd_ops.TextureStats(q=torch.full((2, 2, 2), 0.5), cooc=torch.zeros(2, 1, 2, 2),
                               hist=torch.zeros(2, 2), levels=torch.zeros(2, 2))
    t.cooc[0, 0, 0, 1] = 0.5   # image 0: squared distance 0.25; image 1: 0
    loss = statistical_loss(s, t, beta=2.0)
    assert float(loss) == pytest.approx(0.25 + 2.0 * (0.25 + 0.0) / 2)


def test_cdm_pads_to_a_valid_size_and_matches_pdfb_dec():
    cdm = ContourletDecomposition(nlevs=(2, 3))
    x = torch.randn(1, 2, 30, 20)
    low, bands = cdm(x)
    xp, _ = sstkd_ops.pdfb_pad(x, (2, 3))
    ref_low, ref_bands = sstkd_ops.pdfb_dec(xp, nlevs=(2, 3), backend="reference")
    torch.testing.assert_close(low, ref_low)
    assert [len(b) for b in bands] == [4, 8]
    torch.testing.assert_close(bands[1][5], ref_bands[1][5])


def test_dtiem_promotes_half_precision_features():
    out = TextureIntensityEqualization(num_levels=4)(torch.randn(1, 3, 8, 8).bfloat16())
    assert out.q.dtype == torch.float32


def test_texture_losses_do_not_depend_on_the_feature_scale():
    """'energy': the structural loss of (a x adapted student, a x teacher) equals that at a = 1;
    'standardize': each side's scale drops out on its own; the statistical loss (cosine-based)
    ignores either scale. 'none' grows with a^2."""
    torch.manual_seed(0)
    s_feat, t_feat = _features()
    s, t = s_feat["layer1"].detach().double(), t_feat["layer1"].detach().double().abs()
    base, scaled = {}, {}
    for norm in ("energy", "standardize", "none"):
        d = TextureDistiller({"layer1": 4}, {"layer1": 6}, nlevs=(2, 2), num_levels=8,
                             str_norm=norm).double()
        base[norm] = d({"layer1": s}, {"layer1": t})
        bn = d.adapters["layer1"].bn
        with torch.no_grad():  # the adapter's output x 1000 (BatchNorm's affine part)
            bn.weight.mul_(1e3)
            bn.bias.mul_(1e3)
        scaled[norm] = d({"layer1": s}, {"layer1": 1e3 * t})
    # rtol: float64 round-off for 'energy' and 'sta' (measured 0 and 3e-16); for 'standardize'
    # the variance floor 1e-5 against plane variances ~0.1-1 at a = 1 (measured 1.9e-5).
    for norm, rtol in (("energy", 1e-12), ("standardize", 5e-5)):
        torch.testing.assert_close(scaled[norm]["str"], base[norm]["str"], rtol=rtol, atol=0)
        torch.testing.assert_close(scaled[norm]["sta"], base[norm]["sta"], rtol=1e-12, atol=0)
    torch.testing.assert_close(scaled["none"]["str"], 1e6 * base["none"]["str"])
    # standardize: each side alone (student x 10 through the adapter's input, teacher x 1000);
    # the variance floors (BatchNorm's and ours, 1e-5 against variances ~0.1-1) limit this
    # (measured 1.4e-5).
    d = TextureDistiller({"layer1": 4}, {"layer1": 6}, nlevs=(2, 2), num_levels=8,
                         str_norm="standardize").double()
    one = d({"layer1": s}, {"layer1": t})["str"]
    torch.testing.assert_close(d({"layer1": 10 * s}, {"layer1": 1e3 * t})["str"], one,
                               rtol=3e-5, atol=0)


def _features(b=2, cs=4, ct=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return ({"layer1": torch.randn(b, cs, size, size, generator=g, requires_grad=True)},
            {"layer1": torch.randn(b, ct, size, size, generator=g, requires_grad=True)})


def test_distiller_trains_the_adapter_and_never_the_teacher():
    s_feat, t_feat = _features()
    distiller = TextureDistiller({"layer1": 4}, {"layer1": 6}, nlevs=(2, 2), num_levels=8)
    losses = distiller(s_feat, t_feat)
    assert set(losses) == {"str", "sta"}
    (losses["str"] + losses["sta"]).backward()
    assert t_feat["layer1"].grad is None
    assert s_feat["layer1"].grad is not None and s_feat["layer1"].grad.abs().sum() > 0
    assert distiller.adapters["layer1"].conv.weight.grad.abs().sum() > 0


def test_distiller_is_zero_when_the_adapted_student_equals_the_teacher():
    t = torch.randn(2, 3, 16, 16)
    distiller = TextureDistiller({"layer1": 3}, {"layer1": 3}, nlevs=(2, 2), num_levels=8)
    adapter = distiller.adapters["layer1"]
    with torch.no_grad():
        adapter.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    adapter.eval()  # BN with running stats (0, 1) is the identity up to eps
    adapter.bn.eps = 0.0
    losses = distiller({"layer1": t}, {"layer1": t})
    assert float(losses["str"]) < 1e-10 and float(losses["sta"]) < 1e-10


def test_distiller_resizes_student_maps_to_the_teacher():
    s_feat, t_feat = _features()
    s_feat = {"layer1": torch.randn(2, 4, 8, 8)}
    losses = TextureDistiller({"layer1": 4}, {"layer1": 6}, nlevs=(2, 2),
                              statistical=False)(s_feat, t_feat)
    assert set(losses) == {"str"} and torch.isfinite(losses["str"])


@pytest.mark.parametrize("student, teacher, match", [
    ({"layer1": torch.randn(2, 4, 16, 16)}, {"layer1": torch.randn(3, 6, 16, 16)},
     "cannot be aligned"),
    ({"layer2": torch.randn(2, 4, 16, 16)}, {"layer1": torch.randn(2, 6, 16, 16)},
     "tap 'layer1' missing"),
])
def test_distiller_rejects_features_it_cannot_align(student, teacher, match):
    distiller = TextureDistiller({"layer1": 4}, {"layer1": 6}, nlevs=(2, 2), num_levels=4)
    with pytest.raises(ValueError, match=match):
        distiller(student, teacher)


def test_distiller_rejects_unknown_taps():
    with pytest.raises(ValueError, match="tap 'layer9' is not a student feature"):
        TextureDistiller({"layer1": 4}, {"layer1": 6}, taps=("layer9",))


def test_structural_energy_loss_is_a_mean_over_images():
    """Per image: the loss of a batch is the mean of its images' losses (data parallelism)."""
    g = torch.Generator().manual_seed(5)
    s = [torch.randn(4, 2, 6, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    t = [torch.randn(4, 2, 6, 6, generator=g, dtype=torch.float64) * (1 + torch.arange(4.0,
         dtype=torch.float64).view(4, 1, 1, 1)) for _ in range(3)]
    whole = structural_loss((s[0], [s[1:]]), (t[0], [t[1:]]))
    parts = [structural_loss((s[0][i:i + 1], [[x[i:i + 1] for x in s[1:]]]),
                             (t[0][i:i + 1], [[x[i:i + 1] for x in t[1:]]])) for i in range(4)]
    torch.testing.assert_close(whole, torch.stack(parts).mean(), rtol=1e-14, atol=0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_distiller_sampler_weights_both_sides_from_the_teacher(backend):
    """With the sampler on, 'sta' is L_sta of the student's and the teacher's DTIEM, both
    counted with the teacher's importance weights; gain 0 is the plain DTIEM."""
    torch.manual_seed(0)
    s_feat, t_feat = _features(size=12)
    kw = dict(nlevs=(2, 2), num_levels=8, structural=False, backend=backend)
    d = TextureDistiller({"layer1": 4}, {"layer1": 6}, sampler_anchors=3, sampler_radius=1.5,
                         sampler_gain=2.0, **kw)
    out = d(s_feat, t_feat)["sta"]
    t = t_feat["layer1"].detach()
    w = sstkd_ops.texture_importance(t, 3, 1.5, 2.0)
    assert float(w.max()) == 3.0 and float(w.min()) >= 1.0  # the anchors weigh 1 + gain
    s = d.adapters["layer1"](s_feat["layer1"])
    want = statistical_loss(d.dtiem(s, w), d.dtiem(t, w), d.beta)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-7)
    plain = TextureDistiller({"layer1": 4}, {"layer1": 6}, sampler_anchors=3,
                             sampler_gain=0.0, **kw)
    plain.load_state_dict(d.state_dict())
    want_plain = statistical_loss(d.dtiem(s), d.dtiem(t), d.beta)
    torch.testing.assert_close(plain(s_feat, t_feat)["sta"], want_plain, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(out, want_plain)  # the weights change the counts


def test_standardize_planes_by_hand():
    from sstkd.losses import standardize_planes

    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]], [[2.0, 2.0], [2.0, 2.0]]]], dtype=torch.float64)
    out = standardize_planes(x)
    # plane 0: mean 4, variance 5 -> (x - 4) / sqrt(5 + 1e-5); plane 1 constant -> 0
    want0 = (torch.tensor([[1.0, 3.0], [5.0, 7.0]], dtype=torch.float64) - 4) / (5 + 1e-5) ** 0.5
    torch.testing.assert_close(out[0, 0], want0, rtol=1e-14, atol=0)
    assert torch.equal(out[0, 1], torch.zeros(2, 2, dtype=torch.float64))


# triton: the ops' own parity tests cover it; through the distiller the interpreter takes
# ~40-90 s even on 8x8 maps, too slow for the suite
@pytest.mark.parametrize("str_norm, backend", [
    ("standardize", "cpu"), ("energy", "cpu"), ("none", "cpu"),
])
def test_texture_losses_every_norm_match_the_reference_backend(str_norm, backend):
    """Each structural form (and the statistical loss) on a fast backend equals the reference
    backend's: the losses are plain PyTorch on top of the ops, so only op rounding differs."""
    require_backend(backend)
    torch.manual_seed(0)
    s_feat, t_feat = _features(size=8)
    s_feat = {k: v.double() for k, v in s_feat.items()}
    t_feat = {k: v.double() for k, v in t_feat.items()}
    out = {}
    for be in ("reference", backend):
        torch.manual_seed(0)
        d = TextureDistiller({"layer1": 4}, {"layer1": 6}, nlevs=(2, 2), num_levels=8,
                             str_norm=str_norm, backend=be).double()
        losses = d(s_feat, t_feat)
        grads = torch.autograd.grad(losses["str"] + losses["sta"], s_feat["layer1"])
        out[be] = (losses["str"], losses["sta"], grads[0])
    for a, b in zip(out[backend], out["reference"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)  # float64: op rounding only
