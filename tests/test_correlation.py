import numpy as np
import pytest
import torch

import cleann
from cleann import _reference
from conftest import assert_close, random_attention


@pytest.mark.parametrize("n", [1, 2, 7, 64, 257])
def test_matches_reference(n, rng):
    a = random_attention(n, rng)
    r = cleann.attention_to_correlation(a)
    assert r.dtype == np.float64 and r.shape == (n, n)
    assert_close(r, _reference.attention_to_correlation(a), atol=1e-12, what="correlation")
    assert np.array_equal(r, r.T)
    assert np.all(np.diag(r) == 1.0)


def test_batched_float32_input(rng):
    a = random_attention(9, rng, heads=6).reshape(2, 3, 9, 9).astype(np.float32)
    r = cleann.attention_to_correlation(a)
    assert r.shape == (2, 3, 9, 9) and r.dtype == np.float64
    assert_close(r, _reference.attention_to_correlation(a.astype(np.float64)), atol=1e-12, what="batched correlation")


def test_torch_in_torch_out(rng):
    a = random_attention(11, rng, heads=4)
    t = torch.tensor(a, dtype=torch.float32)
    r = cleann.attention_to_correlation(t)
    assert isinstance(r, torch.Tensor) and r.dtype == torch.float64 and r.device == t.device
    assert_close(r.numpy(), cleann.attention_to_correlation(a.astype(np.float32)), atol=1e-12, what="torch path")


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_nan_names_index(kind, rng):
    a = random_attention(5, rng, heads=2)
    a[1, 3, 2] = np.nan
    x = torch.tensor(a) if kind == "torch" else a
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 3, 2\)"):
        cleann.attention_to_correlation(x)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_inf_rejected(kind, rng):
    a = random_attention(4, rng)
    a[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"non-finite.*\(0, 1\)"):
        cleann.attention_to_correlation(torch.tensor(a) if kind == "torch" else a)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_zero_row_names_index(kind, rng):
    a = random_attention(6, rng, heads=3)
    a[2, 4, :] = 0.0
    with pytest.raises(ValueError, match=r"row \(2, 4\) is all zero"):
        cleann.attention_to_correlation(torch.tensor(a) if kind == "torch" else a)


@pytest.mark.parametrize("shape", [(3, 4), (5,), (2, 3, 4)])
def test_non_square_rejected(shape):
    with pytest.raises(ValueError, match=r"shape \[\.\.\., n, n\]"):
        cleann.attention_to_correlation(np.ones(shape))


def test_integer_dtype_rejected():
    with pytest.raises(ValueError, match="floating-point"):
        cleann.attention_to_correlation(np.ones((3, 3), dtype=np.int64))
