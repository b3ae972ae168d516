"""Batch explanation jobs: many texts in, one record per text out, resumable.

The output folder holds ``config.json`` (what produced the results: a rerun with a different
configuration is refused), part files ``part-NNNNN.jsonl`` (or ``.parquet``) each written to a
temporary name and renamed when complete, and ``errors-NNNNN.jsonl`` beside each part for the rows
that could not be explained (empty text, missing or duplicate id) with the reason. A rerun of the
same command skips every id found in a complete part (or its errors file), so a crash or kill
loses at most the batch in flight and no id is ever written twice.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field

FORMATS = ("jsonl", "parquet")


class BatchError(Exception):
    """A problem with the job's input, output folder or configuration (exit code 2 in the CLI)."""


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    errors: int = 0
    seconds: float = 0.0
    parts: list[str] = field(default_factory=list)

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        return (f"{self.done} explained, {self.errors} errors, {self.skipped} already done; "
                f"{self.seconds:.1f} s ({rate:.2f} texts/s)")


def read_rows(path: str, id_col: str = "id", text_col: str = "text"):
    """Yields (line number, row dict) from a JSONL or Parquet file; checks the columns exist."""
    if not os.path.isfile(path):
        raise BatchError(f"cannot read {path!r}: no such file")
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BatchError("reading Parquet needs pyarrow: pip install pyarrow") from None
        try:
            table = pq.read_table(path)
        except Exception as exc:
            raise BatchError(f"cannot read {path!r} as Parquet: {exc}") from None
        missing = [c for c in (id_col, text_col) if c not in table.column_names]
        if missing:
            raise BatchError(f"{path} has no column {missing[0]!r} (columns: {table.column_names})")
        for k, row in enumerate(table.to_pylist(), start=1):
            yield k, row
        return
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise BatchError(f"cannot read {path!r}: {exc}") from None
    with f:
        checked = False
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
                    raise BatchError(f"{path}: the first row has no {missing[0]!r} field (fields: {sorted(row)}); "
                                     "name the columns with --id-column / --text-column")
                checked = True
            yield k, row


def _count_rows(path: str) -> int:
    """Rows in the input, for the progress line's ETA (non-blank lines of a JSONL file)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _done_ids(out_dir: str) -> tuple[set, int]:
    """Ids in complete parts and their error files, and the next part number."""
    done, last = set(), 0
    for name in sorted(os.listdir(out_dir)):
        stem, ext = os.path.splitext(name)
        if not (stem.startswith("part-") or stem.startswith("errors-")) or ext not in (".jsonl", ".parquet"):
            continue
        last = max(last, int(stem.split("-")[1]))
        path = os.path.join(out_dir, name)
        if ext == ".parquet":
            import pyarrow.parquet as pq

            done.update(str(v) for v in pq.read_table(path, columns=["id"]).column("id").to_pylist())
        else:
            with open(path, encoding="utf-8") as f:
                done.update(str(json.loads(line)["id"]) for line in f if line.strip())
    return done, last + 1


def _write_atomic(path: str, records: list[dict], fmt: str) -> None:
    tmp = path + ".tmp"
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([{k: json.dumps(v) if isinstance(v, (dict, list)) else v
                                              for k, v in r.items()} for r in records]), tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _check_config(out_dir: str, config: dict) -> None:
    path = os.path.join(out_dir, "config.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise BatchError(f"{out_dir} holds results of a different configuration (differs in: {', '.join(diff)}); "
                             "refusing to mix them: choose a new --out folder")
        return
    _write_json_atomic(path, config)


def _write_json_atomic(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def run(input_path: str, out_dir: str, *, explainer, config: dict, batch_size: int = 8, fmt: str = "parquet",
        id_col: str = "id", text_col: str = "text", progress: bool = True) -> Summary:
    """Explains every row of ``input_path`` into ``out_dir`` with ``explainer`` (a cleann.hf.Explainer).

    ``config`` describes the explainer (model, task, labels, ...): it is stored with the results
    and must match on a rerun.
    """
    if fmt not in FORMATS:
        raise BatchError(f"format must be one of {FORMATS}, got {fmt!r}")
    if batch_size < 1:
        raise BatchError(f"batch size must be positive, got {batch_size}")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"cannot create {out_dir!r}: {exc}") from None
    config = dict(config, id_column=id_col, text_column=text_col, format=fmt)
    _check_config(out_dir, config)
    done, part = _done_ids(out_dir)
    summary = Summary(skipped=0)
    seen: set = set()
    total = _count_rows(input_path)
    start = time.perf_counter()
    batch: list[tuple[str, str]] = []
    errors: list[dict] = []

    def flush():
        nonlocal part
        if not batch and not errors:
            return
        records = []
        if batch:
            results = explainer.explain([t for _, t in batch])
            for (rid, _), res in zip(batch, results):
                rec = res.to_dict()
                rec["id"] = rid
                records.append(rec)
        name = f"part-{part:05d}.{fmt}"
        if errors:
            _write_atomic(os.path.join(out_dir, f"errors-{part:05d}.jsonl"), errors, "jsonl")
        if records:
            _write_atomic(os.path.join(out_dir, name), records, fmt)
            summary.parts.append(name)
        summary.done += len(records)
        summary.errors += len(errors)
        part += 1
        batch.clear()
        errors.clear()
        if progress:
            elapsed = time.perf_counter() - start
            rate = summary.done / elapsed if elapsed > 0 else 0.0
            left = max(total - summary.done - summary.errors - summary.skipped, 0)
            eta = f", about {left / rate:.0f} s left" if rate > 0 else ""
            print(f"\r{summary.done + summary.errors + summary.skipped}/{total} rows: {summary.done} explained, "
                  f"{summary.errors} errors, {summary.skipped} skipped, {rate:.2f} texts/s{eta}   ",
                  end="", file=sys.stderr, flush=True)

    try:
        for line, row in read_rows(input_path, id_col, text_col):
            rid = None if "__error__" in row else row.get(id_col)
            text = row.get(text_col)
            if rid is None or (isinstance(rid, str) and not rid.strip()):
                key = f"line:{line}"  # rows without an id are reported once, by line
                if key in done:
                    summary.skipped += 1
                else:
                    errors.append({"id": key, "line": line, "reason": row.get("__error__", f"missing {id_col!r}")})
                continue
            rid = str(rid)
            if rid in done:
                summary.skipped += 1
                continue
            if rid in seen:
                errors.append({"id": f"{rid}#line:{line}", "line": line, "reason": f"duplicate id {rid!r}"})
                continue
            seen.add(rid)
            if not isinstance(text, str) or not text.strip():
                errors.append({"id": rid, "line": line, "reason": f"empty or missing {text_col!r}"})
                continue
            batch.append((rid, text))
            if len(batch) >= batch_size:
                flush()
        flush()
    except OSError as exc:
        raise BatchError(f"writing to {out_dir!r} failed ({exc}); completed parts are kept, rerun to go on") from None
    finally:
        summary.seconds = time.perf_counter() - start
        if progress:
            print(file=sys.stderr)
    return summary
