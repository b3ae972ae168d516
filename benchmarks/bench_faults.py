"""Costs found by the fault run: level 0 of the skeleton, ICD's memory at thousands of nodes, fci's
caps, PC's orientation.

    python benchmarks/bench_faults.py level0        # skeleton vs icd vs one batched ci_test, 12 x 128 tokens
    python benchmarks/bench_faults.py icdmem 2000   # icd(max_level=1) on n random-attention tokens: time, peak RSS
    python benchmarks/bench_faults.py fci [none]    # fci on a 128-token MiniLM head, default caps or none
    python benchmarks/bench_faults.py fcirandom 128 [none]  # fci on random attention
    python benchmarks/bench_faults.py pc 1500       # pc(max_level=1): all of it against the skeleton alone
"""

import resource
import sys
import time

import numpy as np

import cleann

what = sys.argv[1]
rng = np.random.default_rng(0)



def attn(n, heads=None):
    shape = (n, n) if heads is None else (heads, n, n)
    logits = rng.normal(size=shape)
    cols = rng.choice(n, size=3, replace=False)
    logits[..., cols] += 3.0
    a = np.exp(logits)
    return a / a.sum(-1, keepdims=True)

if what == "level0":
    R = cleann.attention_to_correlation(attn(128, 12))
    n = 128
    iu = np.triu_indices(n, 1)
    q = len(iu[0])
    I = np.tile(iu[0], 12); J = np.tile(iu[1], 12); G = np.repeat(np.arange(12), q)
    def best(f, k=5):
        ts = []
        for _ in range(k):
            t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
        return sorted(ts)[k // 2]
    sk = best(lambda: cleann.skeleton(R, 384, max_level=0, num_threads=1))
    icd = best(lambda: cleann.icd(R, 384, max_level=0, num_threads=1))
    ci = best(lambda: cleann.ci_test(R, I, J, np.zeros((len(I), 0), np.int64), num_samples=384, graph=G,
                                     pvalues=False, num_threads=1))
    print(f"level 0, 12 x 128 tokens ({12 * q} tests), ms: skeleton {sk*1e3:.2f}, icd (max_level=0) {icd*1e3:.2f}, "
          f"ci_test batched {ci*1e3:.2f}")
elif what == "icdmem":
    n = int(sys.argv[2])
    R = cleann.attention_to_correlation(attn(n))
    t = time.perf_counter()
    g = cleann.icd(R, 384, max_level=1)
    print(f"icd n={n} max_level=1: {time.perf_counter() - t:.1f} s, peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, {len(g.sepsets)} separated pairs")
elif what == "pc":
    n = int(sys.argv[2])
    R = cleann.attention_to_correlation(attn(n))
    t = time.perf_counter()
    g = cleann.pc(R, 384, max_level=1)
    total = time.perf_counter() - t
    t = time.perf_counter()
    sk = cleann.skeleton(R, 384, max_level=1)
    print(f"pc n={n} max_level=1: {total:.1f} s in all, skeleton alone {time.perf_counter() - t:.1f} s")
elif what == "fcirandom":
    n = int(sys.argv[2])
    logits = np.random.default_rng(1).normal(size=(n, n))  # near-uniform attention: dense possible-d-sep sets
    a = np.exp(logits)
    R = cleann.attention_to_correlation(a / a.sum(-1, keepdims=True))
    kw = {} if len(sys.argv) < 4 else {"max_pds_size": None, "pds_budget": None, "skeleton_budget": None}
    t = time.perf_counter()
    g = cleann.fci(R, 384, **kw)
    print(f"fci, random attention n={n}, {kw or 'default caps'}: {time.perf_counter() - t:.2f} s, "
          f"pds_capped {g.info['pds_capped']}, skeleton_capped {g.info['skeleton_capped']}, "
          f"tests per level {g.tests_per_level.tolist()}")
elif what == "fci":
    from cleann.hf import AttentionCapture, load
    import torch
    model, tok = load()
    text = " ".join(["the film was long and slow but the actors did well"] * 12)
    enc = tok(text, return_tensors="pt", truncation=True, max_length=128)
    with torch.no_grad(), AttentionCapture(model) as cap:
        model(**enc)
    R = cleann.attention_to_correlation(cap.attention[0, 0].double().numpy())
    kw = {} if len(sys.argv) < 3 else {"max_pds_size": None, "pds_budget": None}
    t = time.perf_counter()
    g = cleann.fci(R, 384, **kw)
    print(f"fci on a {R.shape[0]}-token MiniLM head, {kw or 'defaults'}: {time.perf_counter() - t:.2f} s, "
          f"info {dict((k, v) for k, v in g.info.items() if k != 'singular_per_level')}")
