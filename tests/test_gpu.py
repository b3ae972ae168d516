"""GPU backends (Triton, CUDA) against the float64 reference and the CPU core.

Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors (about 1 ms per
program), so sizes here stay small; the CUDA cases run only where a device and a CUDA build exist.
"""

import math

import numpy as np
import pytest

import cleann
from cleann import _backend, _gpu, _reference
from cleann._backend import BackendUnavailableError
from conftest import (
    PVALUE_ATOL,
    RHO_ATOL,
    assert_close,
    gpu_devices,
    near_singular_corr,
    random_attention,
    random_corr,
    random_queries,
    sem_corr,
)

torch = pytest.importorskip("torch")
DEVICES = gpu_devices()
if not DEVICES:
    pytest.skip("neither Triton nor a CUDA build of cleann is installed", allow_module_level=True)
IDS = [b for b, _ in DEVICES]
N = 64


def _on(x, device):
    return torch.as_tensor(np.ascontiguousarray(x)).to(device)


@pytest.mark.parametrize("B,L,m", [(1, 1, 1), (2, 2, 2), (3, 7, 7), (2, 13, 13), (2, 5, 11)])
def test_attention_correlation_kernel(B, L, m, rng):
    from cleann.kernels import attention_correlation

    device = "cuda" if torch.cuda.is_available() else "cpu"
    a = rng.random((B, L, m)) ** 3 + 1e-3
    a /= a.sum(-1, keepdims=True)
    got = attention_correlation(_on(a, device)).cpu().numpy()
    want = _reference.attention_to_correlation(a)
    want[:, np.arange(L), np.arange(L)] = 1.0  # the kernel's diagonal is exact; the reference's is C_ii / C_ii
    assert_close(got, np.clip(want, -1, 1), atol=1e-13, what="corr(A A^T)")
    assert np.array_equal(got, got.transpose(0, 2, 1)), "not exactly symmetric"
    assert np.all(np.diagonal(got, axis1=1, axis2=2) == 1.0)


def test_attention_to_correlation_triton_backend(rng):
    attn = np.stack([random_attention(9, rng), random_attention(9, rng)]).astype(np.float32)
    got = cleann.attention_to_correlation(torch.from_numpy(attn), backend="triton")
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    assert_close(got.numpy(), cleann.attention_to_correlation(attn), atol=1e-13, what="fused vs torch")
    with pytest.raises(ValueError, match="all zero"):
        cleann.attention_to_correlation(torch.zeros(1, 3, 3), backend="triton")


@pytest.mark.parametrize("backend,device", DEVICES, ids=IDS)
@pytest.mark.parametrize("kind", ["attention", "spd", "near-singular"])
@pytest.mark.parametrize("n,l", [(2, 0), (9, 0), (9, 1), (9, 2), (9, 3), (11, 5), (12, 8)])
def test_ci_kernel_against_reference(backend, device, kind, n, l, rng):
    if kind == "near-singular" and n < l + 3:
        pytest.skip("too small")
    if kind == "attention":
        R = cleann.attention_to_correlation(random_attention(n, rng))
    elif kind == "spd":
        R = random_corr(n, rng)
    else:
        R, _ = near_singular_corr(n, rng, 1e-7)
    i, j, S = random_queries(n, 40, l, rng)
    res = cleann.ci_test(_on(R, device), i, j, S, num_samples=N, alpha=0.05, backend=backend)
    assert res.backend == backend and res.rho.device.type == torch.device(device).type
    decided = [_reference.ci_independent(R, a, b, s, N, 0.05) for a, b, s in zip(i, j, S.tolist())]
    assert np.array_equal(res.independent.cpu().numpy(), [d[0] for d in decided])
    assert np.array_equal(res.singular.cpu().numpy(), [d[1] for d in decided])
    rho_ref = _reference.partial_correlation(R, i, j, S)
    rho = res.rho.cpu().numpy()
    if kind == "spd":
        assert_close(rho, rho_ref, atol=RHO_ATOL, what="rho")
        p_ref = _reference.fisher_z_pvalue(rho_ref, N, np.full(len(i), l))
        assert_close(res.pvalue.cpu().numpy(), p_ref, atol=PVALUE_ATOL, what="p-value")
    else:  # badly conditioned blocks: compare where the reference is defined
        ok = ~np.isnan(rho_ref)
        assert_close(rho[ok], rho_ref[ok], atol=1e-8, rtol=1e-6, what="rho")


@pytest.mark.parametrize("backend,device", DEVICES, ids=IDS)
def test_ci_stack_matches_cpu_core(backend, device, rng):
    Rs = np.stack([random_corr(8, rng) for _ in range(3)])
    i, j, S = random_queries(8, 60, 2, rng)
    g = rng.integers(0, 3, size=60)
    got = cleann.ci_test(_on(Rs, device), i, j, S, num_samples=N, graph=g, alpha=0.05, backend=backend)
    want = cleann.ci_test(Rs, i, j, S, num_samples=N, graph=g, alpha=0.05, backend="cpu")
    assert_close(got.rho.cpu().numpy(), want.rho, atol=RHO_ATOL, what="rho")
    assert np.array_equal(got.independent.cpu().numpy(), want.independent)
    rho = cleann.partial_correlation(_on(Rs, device), i, j, S, graph=g, backend=backend)
    assert_close(rho.cpu().numpy(), want.rho, atol=RHO_ATOL, what="partial_correlation")
    one = cleann.partial_correlation(_on(Rs[0], device), 0, 1, [2, 3], backend=backend)
    assert isinstance(one, float) and math.isclose(one, _reference.partial_correlation_one(Rs[0], 0, 1, [2, 3]),
                                                   abs_tol=RHO_ATOL)


def _stack(rng, n, kinds):
    out = []
    for k in kinds:
        if k == "sem":
            out.append(sem_corr(n, rng, 0.35))
        elif k == "attention":
            out.append(cleann.attention_to_correlation(random_attention(n, rng)))
        else:
            out.append(near_singular_corr(n, rng, 1e-9)[0])
    return np.stack(out)


def _same_skeleton(a, b):
    assert np.array_equal(a.adjacency, b.adjacency)
    assert np.array_equal(a.tests_per_level, b.tests_per_level)
    assert np.array_equal(a.singular_per_level, b.singular_per_level)
    assert dict(a.sepsets.items()) == dict(b.sepsets.items())
    assert all(a.sepsets.level(k) == b.sepsets.level(k) for k in b.sepsets.keys())


@pytest.mark.parametrize("backend,device", DEVICES, ids=IDS)
@pytest.mark.parametrize("n,kinds", [(1, ["sem"]), (2, ["sem", "attention"]), (7, ["sem", "attention", "singular"]),
                                     (8, ["sem", "sem"])])
def test_skeleton_equals_cpu(backend, device, n, kinds, rng):
    Rs = _stack(rng, n, kinds)
    got = cleann.skeleton(_on(Rs, device), N, alpha=0.05, backend=backend)
    assert got.backend == backend
    _same_skeleton(got, cleann.skeleton(Rs, N, alpha=0.05, backend="cpu"))


@pytest.mark.parametrize("backend,device", DEVICES, ids=IDS)
def test_skeleton_against_reference_with_start_graph_and_cap(backend, device, rng):
    R = sem_corr(8, rng, 0.4)
    start = rng.random((8, 8)) < 0.7
    start = np.triu(start, 1)
    start = start | start.T
    got = cleann.skeleton(_on(R, device), N, alpha=0.05, max_level=1, adjacency=start, backend=backend)
    adj, found, tests, singular = _reference.skeleton(R, N, 0.05, max_level=1, adjacency=start)
    assert np.array_equal(got.adjacency, adj)
    assert got.tests_per_level.tolist() == tests
    assert {k: got.sepsets.all(k) for k in got.sepsets.keys()} == found


@pytest.mark.parametrize("backend,device", DEVICES, ids=IDS)
def test_learners_equal_cpu(backend, device, rng):
    Rs = _stack(rng, 7, ["sem", "attention", "sem"])
    T = _on(Rs, device)
    for fn in (cleann.pc, cleann.fci, cleann.icd):
        got, want = fn(T, N, 0.05, backend=backend), fn(Rs, N, 0.05, backend="cpu")
        for g, w in zip(got, want):
            assert g.backend == backend
            assert np.array_equal(g.marks, w.marks), fn.__name__
            assert np.array_equal(g.tests_per_level, w.tests_per_level), fn.__name__
            assert g.sepsets == w.sepsets
    # ICD with a level cap, and with latent nodes: the GPU runs r = 0 (and 1) only
    for ml in (0, 1, 2):
        g, w = cleann.icd(T, N, 0.05, max_level=ml, backend=backend), cleann.icd(Rs, N, 0.05, max_level=ml)
        assert all(np.array_equal(a.marks, b.marks) for a, b in zip(g, w))
    nodes = [[0, 2, 3, 5, 6], [1, 2, 3, 4, 5, 6], [0, 1, 2, 3]]
    g, w = cleann.fci(T, N, 0.05, nodes=nodes, backend=backend), cleann.fci(Rs, N, 0.05, nodes=nodes)
    assert all(np.array_equal(a.marks, b.marks) and np.array_equal(a.nodes, b.nodes) for a, b in zip(g, w))


@pytest.mark.parametrize("backend,device", DEVICES, ids=IDS)
def test_fci_skeleton_budget_on_device(backend, device, rng):
    # the stack's graphs stop at different levels; the device's counts and graphs are the CPU's
    Rs = _stack(rng, 9, ["attention", "sem", "attention"])
    free = cleann.fci(Rs, N, 0.05, skeleton_budget=None)
    spent = [int(g.tests_per_level[:2].sum()) for g in free]
    budget = min(s for s, g in zip(spent, free) if len(g.tests_per_level) > 2) + 1
    want = cleann.fci(Rs, N, 0.05, skeleton_budget=budget)
    assert any(g.info["skeleton_capped"] > 0 for g in want)
    got = cleann.fci(_on(Rs, device), N, 0.05, skeleton_budget=budget, backend=backend)
    for g, w in zip(got, want):
        assert np.array_equal(g.marks, w.marks)
        assert np.array_equal(g.tests_per_level, w.tests_per_level)
        assert g.info["skeleton_capped"] == w.info["skeleton_capped"]


@pytest.mark.parametrize("backend,device", DEVICES, ids=IDS)
def test_abcd_on_device(backend, device, rng):
    attn = np.stack([random_attention(6, rng, heads=2) for _ in range(2)])
    got = cleann.abcd(_on(attn, device), N, 0.05, lengths=[6, 4], backend=backend)
    want = cleann.abcd(attn, N, 0.05, lengths=[6, 4])
    for gs, ws in zip(got, want):
        for g, w in zip(gs, ws):
            assert g.backend == backend and np.array_equal(g.marks, w.marks) and np.array_equal(g.nodes, w.nodes)


def test_stack_split_when_out_of_memory(monkeypatch, rng):
    backend, device = DEVICES[0]
    Rs = _stack(rng, 6, ["sem", "attention", "sem", "sem", "attention"])
    whole = _gpu.skeleton(backend, _on(Rs, device), _complete(5, 6, device), N, 0.05, None, 1e-10)
    real = _gpu._skeleton_chunk
    sizes = []

    def tight(impl, R, *args):
        sizes.append(R.shape[0])
        if R.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(impl, R, *args)

    monkeypatch.setattr(_gpu, "_skeleton_chunk", tight)
    adj = _complete(5, 6, device)
    split = _gpu.skeleton(backend, _on(Rs, device), adj, N, 0.05, None, 1e-10)
    assert sizes[:2] == [5, 2] and max(sizes[1:]) <= 2
    for k in whole:
        assert np.array_equal(np.asarray(whole[k]), np.asarray(split[k])), k
    assert np.array_equal(adj.cpu().numpy(), cleann.skeleton(Rs, N, alpha=0.05).adjacency)

    def none_fit(impl, R, *args):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(_gpu, "_skeleton_chunk", none_fit)
    with pytest.raises(MemoryError, match="6-token graph does not fit.*MiB per graph"):
        _gpu.skeleton(backend, _on(Rs, device), _complete(5, 6, device), N, 0.05, None, 1e-10)


def _complete(B, n, device):
    adj = torch.ones((B, n, n), dtype=torch.uint8, device=device)
    adj.diagonal(dim1=1, dim2=2).zero_()
    return adj


def test_merge_orders_edges_like_the_core(rng):
    backend, device = DEVICES[0]
    Rs = _stack(rng, 7, ["sem", "sem", "attention"])
    parts = _gpu.skeleton(backend, _on(Rs, device), _complete(3, 7, device), N, 0.05, None, 1e-10, chunk=1)
    cpu = cleann.skeleton(Rs, N, alpha=0.05).sepsets.arrays()
    for k, v in cpu.items():
        assert np.array_equal(parts[k], v), k


def test_unrank_is_lexicographic(rng):
    device = DEVICES[0][1]
    n, level = 9, 3
    adj = np.zeros((1, n, n), np.uint8)
    nbrs = [0, 2, 3, 5, 6, 8]
    adj[0, 4, nbrs] = 1
    adj[0, nbrs, 4] = 1
    A = torch.from_numpy(adj).to(device)
    deg = A.sum(-1, dtype=torch.int32)
    nbr = torch.where(A.bool(), torch.arange(n, device=device), n).sort(dim=-1).values.to(torch.int32)
    binom = torch.tensor(_gpu.binomials(n, level), dtype=torch.int64, device=device)
    from itertools import combinations

    for v in nbrs:
        sets = list(combinations([w for w in nbrs if w != v], level))
        E = len(sets)
        one = lambda x: torch.full((E,), x, dtype=torch.int64, device=device)
        got = _gpu.unrank(nbr, deg, A, one(0), one(4), one(v), torch.arange(E, device=device), level, binom)
        assert [tuple(r) for r in got.cpu().tolist()] == sets


# ---- bad input -------------------------------------------------------------------------------


def test_backend_not_built_or_not_usable(monkeypatch):
    R = np.eye(3)
    if not _backend.cuda_built():
        with pytest.raises(BackendUnavailableError, match="CLEANN_CUDA=ON"):
            cleann.skeleton(R, N, backend="cuda")
    with pytest.raises(BackendUnavailableError, match="first separating set"):
        cleann.skeleton(R, N, sepsets="all", backend="triton")
    with pytest.raises(BackendUnavailableError, match="mode='sequential'"):
        cleann.icd(R, N, mode="sequential", backend="triton")
    with pytest.raises(BackendUnavailableError, match="no GPU kernels"):
        cleann.fci(R, N, sepsets="all", backend="cuda")
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(BackendUnavailableError, match="need a CUDA device"):
            cleann.skeleton(R, N, backend="triton")


def test_bad_tensors():
    backend, device = DEVICES[0]
    R = torch.eye(4, dtype=torch.float64, device=device)
    with pytest.raises(ValueError, match="floating-point"):
        cleann.skeleton(torch.eye(4, dtype=torch.int64, device=device), N, backend=backend)
    with pytest.raises(ValueError, match="floating-point"):
        cleann.ci_test(torch.eye(4, dtype=torch.complex128, device=device), 0, 1, [], num_samples=N, backend=backend)
    with pytest.raises(ValueError, match=r"i is on meta but R is on"):
        cleann.ci_test(R, torch.zeros(1, dtype=torch.int64, device="meta"), [1], [[2]], num_samples=N, backend=backend)
    with pytest.raises(ValueError, match="adjacency is on meta"):
        cleann.skeleton(R, N, adjacency=torch.ones(4, 4, device="meta"), backend=backend)
    with pytest.raises(ValueError, match="unit diagonal"):
        cleann.skeleton(2 * R, N, backend=backend)
    with pytest.raises(ValueError, match="non-finite"):
        cleann.skeleton(R * float("nan"), N, backend=backend)
    with pytest.raises(ValueError, match="symmetric"):
        bad = R.clone()
        bad[0, 1] = 0.5
        cleann.skeleton(bad, N, backend=backend)
    with pytest.raises(ValueError, match=r"S contains i or j \(query 0\)"):
        cleann.ci_test(R, [0], [1], [[1]], num_samples=N, backend=backend)
    with pytest.raises(ValueError, match=r"j = 9 out of range"):
        cleann.ci_test(R, [0], [9], [[2]], num_samples=N, backend=backend)
    with pytest.raises(ValueError, match="num_samples too small"):
        cleann.ci_test(R, [0], [1], [[2]], num_samples=4, backend=backend)
    with pytest.raises(ValueError, match="self-loop"):
        cleann.skeleton(R, N, adjacency=np.eye(4), backend=backend)


def test_float32_input_is_tested_in_float64(rng):
    backend, device = DEVICES[0]
    R = cleann.attention_to_correlation(random_attention(6, rng))
    R32 = torch.from_numpy(R).float()
    R32 = 0.5 * (R32 + R32.T)
    R32.diagonal().fill_(1.0)
    got = cleann.skeleton(R32.to(device), N, alpha=0.05, backend=backend)
    want = cleann.skeleton(R32.double().numpy(), N, alpha=0.05)
    _same_skeleton(got, want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_follows_the_tensor(rng):
    R = _stack(rng, 16, ["attention", "sem"])
    sk = cleann.skeleton(torch.from_numpy(R).cuda(), N, alpha=0.05)
    assert sk.backend in ("cuda", "triton")
    _same_skeleton(sk, cleann.skeleton(R, N, alpha=0.05))
    assert cleann.skeleton(R, N, alpha=0.05).backend == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not any(b == "cuda" for b, _ in DEVICES), reason="needs a CUDA device and a CUDA build")
@pytest.mark.parametrize("n", [24, 64])
def test_cuda_generic_levels_and_larger_stacks(n, rng):
    # sparse SEMs reach levels past the kernels' compiled-in sizes (> 6)
    R = np.stack([sem_corr(n, rng, 0.5) for _ in range(3)] + [cleann.attention_to_correlation(random_attention(n, rng))])
    got = cleann.skeleton(torch.from_numpy(R).cuda(), 1000, alpha=0.05, backend="cuda")
    _same_skeleton(got, cleann.skeleton(R, 1000, alpha=0.05))
    i, j, S = random_queries(n, 500, 9, rng)
    res = cleann.ci_test(torch.from_numpy(R[0]).cuda(), i, j, S, num_samples=1000, backend="cuda")
    want = cleann.ci_test(R[0], i, j, S, num_samples=1000)
    assert np.array_equal(res.independent.cpu().numpy(), want.independent)
    assert_close(res.rho.cpu().numpy(), want.rho, atol=1e-8, rtol=1e-6, what="rho l=9")
