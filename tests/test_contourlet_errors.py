"""Bad input to the public contourlet ops raises TypeError/ValueError naming what came."""

from __future__ import annotations

import pytest
import torch

from sstkd_ops import BackendUnavailableError
from sstkd_ops import contourlet as C
from sstkd_ops.contourlet import filters

X = torch.rand(1, 1, 16, 16, dtype=torch.float64)


def _raises(exc, *patterns):
    """pytest.raises whose message must contain every pattern (plain substrings)."""
    class _Ctx:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *args):
            out = self.ctx.__exit__(*args)
            msg = str(self.info.value)
            for p in patterns:
                assert p in msg, f"{p!r} not in {msg!r}"
            return out

    return _Ctx()


@pytest.mark.parametrize("op", [C.lp_dec, C.dfb_dec, C.pdfb_dec, C.pdfb_pad])
def test_not_a_tensor(op):
    with _raises(TypeError, op.__name__, "'x'", "torch.Tensor", "ndarray"):
        op(X.numpy())


@pytest.mark.parametrize("op", [C.lp_dec, C.dfb_dec, C.pdfb_dec, C.pdfb_pad])
def test_wrong_rank(op):
    with _raises(ValueError, op.__name__, "'x'", "4-D", "(16, 16)"):
        op(X[0, 0])


@pytest.mark.parametrize("op", [C.lp_dec, C.dfb_dec, C.pdfb_dec])
def test_wrong_dtype(op):
    with _raises(TypeError, op.__name__, "'x'", "float32 or float64", "torch.int64"):
        op(X.long())


def test_bad_filter_names():
    with _raises(ValueError, "lp_dec", "'pfilt'", "'db4'"):
        C.lp_dec(X, "db4")
    with _raises(ValueError, "pdfb_dec", "'pfilt'", "'haar'"):
        C.pdfb_dec(X, "haar", "pkva")
    with _raises(ValueError, "pdfb_dec", "'dfilt'", "'pkva4'"):
        C.pdfb_dec(X, "9-7", "pkva4")
    with _raises(ValueError, "dfb_dec", "'dfilt'", "'Burt'"):
        C.dfb_dec(X, "Burt")
    with _raises(ValueError, "dfb_rec", "'dfilt'", "None"):
        C.dfb_rec([X], None)
    with _raises(ValueError, "pfilters", "'name'", "'x'"):
        filters.pfilters("x")
    with _raises(ValueError, "dfilters", "'kind'", "'q'"):
        filters.dfilters("pkva", "q")
    with _raises(ValueError, "ldfilter", "'name'", "'haar'"):
        filters.ldfilter("haar")


def test_bad_nlevs():
    with _raises(TypeError, "pdfb_dec", "'nlevs'", "int", "3"):
        C.pdfb_dec(X, nlevs=3)
    with _raises(TypeError, "pdfb_dec", "'nlevs'", "str"):
        C.pdfb_dec(X, nlevs="33")
    with _raises(ValueError, "pdfb_dec", "'nlevs[1]'", ">= 0", "-1"):
        C.pdfb_dec(X, nlevs=(2, -1))
    with _raises(TypeError, "pdfb_dec", "'nlevs[0]'", "float", "2.0"):
        C.pdfb_dec(X, nlevs=(2.0,))
    with _raises(TypeError, "pdfb_dec", "'nlevs[0]'", "bool"):
        C.pdfb_dec(X, nlevs=(True,))
    with _raises(ValueError, "dfb_dec", "'nlev'", "-2"):
        C.dfb_dec(X, "pkva", -2)
    with _raises(TypeError, "dfb_dec", "'nlev'", "NoneType"):
        C.dfb_dec(X, "pkva", None)


def test_sizes_not_divisible():
    with _raises(ValueError, "pdfb_dec", "'x'", "multiples of 8", "(1, 1, 20, 16)", "pdfb_pad"):
        C.pdfb_dec(torch.rand(1, 1, 20, 16), nlevs=(3, 3))
    with _raises(ValueError, "pdfb_dec", "'x'", "multiples of 8", "(1, 1, 12, 12)"):
        C.pdfb_dec(torch.rand(1, 1, 12, 12), "9-7", "haar", nlevs=(2, 3))
    with _raises(ValueError, "lp_dec", "'x'", "multiples of 2", "(1, 1, 7, 8)"):
        C.lp_dec(torch.rand(1, 1, 7, 8))
    with _raises(ValueError, "dfb_dec", "'x'", "multiples of 4", "(1, 1, 6, 8)"):
        C.dfb_dec(torch.rand(1, 1, 6, 8), "pkva", 3)
    with _raises(ValueError, "dfb_dec", "'x'", "multiples of 4", "(1, 1, 6, 6)"):
        C.dfb_dec(torch.rand(1, 1, 6, 6), "9-7", 2)
    with _raises(ValueError, "pdfb_dec", "'x'", "(1, 1, 0, 8)"):
        C.pdfb_dec(torch.rand(1, 1, 0, 8), nlevs=(1,))


def test_lp_rec_mismatch():
    c, d = C.lp_dec(X)
    with _raises(ValueError, "lp_rec", "'detail'", "(1, 1, 16, 16)", "(1, 1, 16, 8)"):
        C.lp_rec(c, d[..., :8])
    with _raises(TypeError, "lp_rec", "'detail'", "torch.float64", "torch.float32"):
        C.lp_rec(c, d.float())
    with _raises(TypeError, "lp_rec", "'coarse'", "list"):
        C.lp_rec([c], d)


def test_dfb_rec_bad_subbands():
    bands = C.dfb_dec(X, "pkva", 2)
    with _raises(ValueError, "dfb_rec", "'subbands'", "2**nlev", "3"):
        C.dfb_rec(bands[:3])
    with _raises(TypeError, "dfb_rec", "'subbands'", "list of tensors", "Tensor"):
        C.dfb_rec(X)
    with _raises(ValueError, "dfb_rec", "'subbands[2]'", "(1, 1, 8, 8)", "(1, 1, 8, 4)"):
        C.dfb_rec(bands[:2] + [bands[2][..., :4]] + bands[3:])
    with _raises(TypeError, "dfb_rec", "'subbands[1]'", "float64", "float32"):
        C.dfb_rec([bands[0], bands[1].float()] + bands[2:])


def test_pdfb_rec_bad_bands():
    low, bands = C.pdfb_dec(X, nlevs=(0, 2))
    with _raises(TypeError, "pdfb_rec", "'bands'", "Tensor"):
        C.pdfb_rec(low, X)
    with _raises(ValueError, "pdfb_rec", "'bands[1]'", "2**nlev", "5"):
        C.pdfb_rec(low, [bands[0], bands[1] + [bands[1][0]]])
    with _raises(ValueError, "pdfb_rec", "'bands[0][1]'", "(1, 1, 4, 4)", "(1, 1, 4, 2)"):
        C.pdfb_rec(low, [[bands[0][0], bands[0][1][..., :2], bands[0][2]], bands[1]])
    with _raises(ValueError, "pdfb_rec", "'bands[1][0]'", "(1, 1, 8, 8)", "(1, 1, 1, 8)"):
        C.pdfb_rec(low, [bands[0], [bands[1][0][..., :1, :]] + bands[1][1:]])
    with _raises(ValueError, "pdfb_rec", "'size'", "(20, 4)"):
        C.pdfb_rec(low, bands, size=(20, 4))
    with _raises(ValueError, "pdfb_rec", "'lowpass'", "4-D"):
        C.pdfb_rec(low[0], bands)


def test_backend_errors():
    with _raises(ValueError, "pdfb_dec", "'backend'", "'gpu'"):
        C.pdfb_dec(X, nlevs=(2,), backend="gpu")
    if not X.is_cuda:
        with _raises(BackendUnavailableError, "lp_dec", "'cuda'", "needs a CUDA tensor"):
            C.lp_dec(X, backend="cuda")


def test_env_backend_is_checked(monkeypatch):
    monkeypatch.setenv("SSTKD_BACKEND", "bogus")
    with _raises(ValueError, "dfb_dec", "SSTKD_BACKEND", "'bogus'"):
        C.dfb_dec(X, "pkva", 2)
