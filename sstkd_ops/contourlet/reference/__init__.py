"""Plain-PyTorch reference of the contourlet transform: the oracle and the fallback backend.

* :mod:`.pyramid` -- Laplacian pyramid, wavelet level and their cascade with the DFB;
* :mod:`.dfb` -- the directional filter bank (ladder and general tree);
* :mod:`.periodic` -- periodic and quincunx-periodic extension, filtering and resampling.
"""
