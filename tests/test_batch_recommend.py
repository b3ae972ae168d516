"""`cleann batch --task recommendation`: sessions of item ids explained with a tiny BERT4Rec trained here;
the records against the model itself, bad rows, resuming, refusing a different configuration, and the
options of the text tasks refused."""

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from cleann.batch import BatchError, explainer_spec, record_schema, run, schema_gaps  # noqa: E402
from cleann.hf.recommend import RecommenderExplainer  # noqa: E402
from conftest import NUM_ITEMS  # noqa: E402

MASK = NUM_ITEMS + 1
FAST = ["--heads", "0", "--max-size", "2", "--budget", "300", "--quiet"]


@pytest.fixture(scope="module")
def model_dir(item_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bert4rec")
    item_model.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def sessions(item_data):
    return [s[:-1] for s in item_data.sessions[500:510]]


BAD = {"empty": [], "word": [3, "x", 4], "float": [2, 1.5], "outside": [3, 999], "masked": [4, MASK, 5],
       "padded": [4, 0, 5]}
REASONS = {"empty": "is empty", "word": "integer item ids", "float": "integer item ids", "outside": "vocabulary",
           "masked": "mask item", "padded": "padding item"}


@pytest.fixture(scope="module")
def rows(sessions):
    good = [{"id": f"s{k}", "items": s, "user": k} for k, s in enumerate(sessions)]
    bad = [{"id": name, "items": items, "user": -1} for name, items in BAD.items()]
    return good[:4] + bad + good[4:]


def cli(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    p = subprocess.run([sys.executable, "-m", "cleann.cli", "batch", *args], capture_output=True, text=True, env=env,
                       timeout=600)
    return p.returncode, p.stdout, p.stderr


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def command(inp, out, model_dir, *extra):
    return [inp, "--out", out, "--task", "recommendation", "--model", model_dir, "--mask-item", str(MASK), *FAST,
            "--max-error-rate", "1", *extra]


def read_errors(out):
    folder = os.path.join(out, "_errors")
    errs = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name)) as f:
            errs += [json.loads(line) for line in f if line.strip()]
    return errs


def read_records(out):
    return pq.read_table(out).to_pylist()


def top1(item_model, items, removed=()):
    ids = [0 if p in removed else i for p, i in enumerate(items)] + [MASK]
    ids = torch.as_tensor([ids])
    with torch.no_grad():
        logits = item_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].double()
    logits[[0, MASK]] = -torch.inf
    return int(logits.argmax())


@pytest.fixture(scope="module")
def job(rows, model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("job")
    inp = write_jsonl(tmp / "sessions.jsonl", rows)
    out = str(tmp / "out")
    rc, stdout, err = cli(*command(inp, out, model_dir, "--keep-columns", "user", "--rows-per-part", "3"))
    assert rc == 0, err
    return inp, out, stdout


def test_records_explain_the_models_recommendation(job, item_model, sessions):
    _, out, stdout = job
    records = read_records(out)
    assert sorted(r["id"] for r in records) == sorted(f"s{k}" for k in range(len(sessions)))
    assert "10 explained, 6 errors" in stdout
    explained = 0
    for r in records:
        items = sessions[int(r["id"][1:])]
        assert r["session"] == items and r["user"] == int(r["id"][1:])
        assert r["recommended"] == top1(item_model, items)
        assert r["abduced"] == items + [r["recommended"]] and r["target"] == len(items)
        assert r["top_items"][0] == r["recommended"]
        for s, its in zip(r["explanations"], r["explanation_items"]):
            assert its == [items[p] for p in s]
            assert top1(item_model, items, set(s)) != r["recommended"], (r["id"], s)
        if r["explanations"]:
            explained += 1
            assert r["status"] == "explained" and r["size"] == min(len(s) for s in r["explanations"])
            assert r["replacement"] == top1(item_model, items, set(r["explanations"][0]))
            rank = r["replacement_rank"]
            assert rank is None or r["top_items"][rank - 1] == r["replacement"]
        assert [h["head"] for h in r["heads"]] == [0]
    assert explained >= 1


def test_parts_have_the_recommendation_schema(job):
    _, out, _ = job
    parts = sorted(n for n in os.listdir(out) if n.endswith(".parquet"))
    assert len(parts) == 4  # 10 records, 3 per part
    schema = pq.read_schema(os.path.join(out, parts[0]))
    assert schema.remove_metadata() == record_schema(task="recommendation", kept={"user": pa.int64()})
    assert json.loads(schema.metadata[b"cleann.config"])["task"] == "recommendation"
    with open(os.path.join(out, "_cleann", "config.json")) as f:
        config = json.load(f)
    assert (config["mask_item"], config["pad_item"], config["removal"], config["top_k"]) == (MASK, 0, "replace", 10)
    assert config["text_column"] == "items" and config["heads"] == [0]


def test_a_real_record_fits_the_schema(item_model, sessions):
    ex = RecommenderExplainer(item_model, mask_item=MASK, heads=[0], max_size=1)
    record = {"id": "x", **ex.explain(sessions[0]).to_dict()}
    schema = record_schema(task="recommendation")
    assert schema_gaps(record, schema) == []
    assert schema_gaps(dict(record, extra=1), schema) == ["extra"]
    table = pa.Table.from_pylist([record], schema=schema)
    assert table.to_pylist()[0]["session"] == sessions[0]
    assert schema_gaps({"id": "y", "text": "a"}, schema) == ["text"]  # not the text schema


def test_bad_rows_are_error_records_with_reasons(job):
    _, out, _ = job
    errors = {e["id"]: e["reason"] for e in read_errors(out)}
    assert set(errors) == set(BAD)
    for name, word in REASONS.items():
        assert word in errors[name], (name, errors[name])


def test_a_rerun_skips_done_ids_and_a_lost_part_is_redone(job, model_dir, tmp_path):
    inp, out, _ = job
    copy = str(tmp_path / "out")
    subprocess.run(["cp", "-r", out, copy], check=True)
    rc, stdout, err = cli(*command(inp, copy, model_dir, "--keep-columns", "user", "--rows-per-part", "3"))
    assert rc == 0, err
    assert "0 explained, 0 errors, 16 already done" in stdout
    parts = sorted(n for n in os.listdir(copy) if n.endswith(".parquet"))
    os.unlink(os.path.join(copy, parts[-1]))  # the last part lost in a kill
    lost = 10 - 3 * (len(parts) - 1)
    rc, stdout, err = cli(*command(inp, copy, model_dir, "--keep-columns", "user", "--rows-per-part", "3"))
    assert rc == 0, err
    assert f"{lost} explained, 0 errors, {16 - lost} already done" in stdout
    ids = [r["id"] for r in read_records(copy)] + [e["id"] for e in read_errors(copy)]
    assert sorted(ids) == sorted([f"s{k}" for k in range(10)] + list(BAD))


@pytest.mark.parametrize("extra,word", [(["--top-k", "5"], "top_k"), (["--removal", "drop"], "removal")])
def test_a_different_configuration_is_refused(job, model_dir, extra, word):
    inp, out, _ = job
    before = sorted(os.listdir(out))
    rc, _, err = cli(*command(inp, out, model_dir, "--keep-columns", "user", *extra))
    assert rc == 2
    assert err.startswith("cleann: error: ") and len(err.strip().splitlines()) == 1
    assert "different configuration" in err and word in err
    assert sorted(os.listdir(out)) == before


@pytest.mark.parametrize("extra,flag", [(["--labels", "a", "b"], "--labels"), (["--template", "It is {label}."],
                                                                               "--template"),
                                        (["--label", "good"], "--label"), (["--replacement", "mask"],
                                                                           "--replacement"),
                                        (["--text-column", "body"], "--text-column")])
def test_text_options_are_refused(tmp_path, model_dir, extra, flag):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "items": [1, 2]}])
    out = str(tmp_path / "out")
    rc, _, err = cli(*command(inp, out, model_dir, *extra))
    assert rc == 2
    assert err.strip().splitlines() == [f"cleann: error: {flag} is an option of the text tasks, not of --task "
                                        "recommendation" + (" (name the sessions' column with --items-column)"
                                                            if flag == "--text-column" else "")]
    assert not os.path.exists(out)


def test_recommendation_options_need_the_task(tmp_path):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "fine"}])
    rc, _, err = cli(inp, "--out", str(tmp_path / "out"), "--mask-item", "3")
    assert rc == 2 and err.strip() == "cleann: error: --mask-item is an option of --task recommendation, not of " \
                                      "--task zero-shot"


def test_bad_models_and_missing_mask_item_are_one_line(tmp_path, model_dir):
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "items": [1, 2]}])
    out = str(tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model")
    cases = [
        (["--model", str(tmp_path / "nowhere"), "--mask-item", str(MASK)], "no model folder"),
        (["--model", str(empty), "--mask-item", str(MASK)], "not a model folder"),
        (["--model", model_dir], "needs --mask-item"),
        (["--mask-item", str(MASK)], "needs --model"),
        (["--model", model_dir, "--mask-item", "500"], "--mask-item must be an item id"),
    ]
    for extra, word in cases:
        rc, _, err = cli(inp, "--out", out, "--task", "recommendation", "--quiet", *extra)
        assert rc == 2, (extra, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("cleann: error: ") and word in lines[0], (extra, err)
    assert not os.path.exists(out)


def test_python_api_on_csv_and_dry_run(tmp_path, model_dir, item_model, sessions):
    inp = tmp_path / "in.csv"
    inp.write_text("id,items\n" + "".join(f"c{k},{' '.join(map(str, s))}\n" for k, s in enumerate(sessions[:3]))
                   + "bad,3 x 4\n")
    spec = explainer_spec(model_dir, task="recommendation", heads=[0], max_size=1, budget=100, mask_item=MASK)
    out = str(tmp_path / "out")
    summary = run(str(inp), out, spec=spec, progress=False, fmt="jsonl", max_error_rate=1)
    assert (summary.done, summary.errors) == (3, 1)
    parts = sorted(n for n in os.listdir(out) if n.startswith("part-"))
    assert len(parts) == 1 and parts[0].endswith(".jsonl")
    with open(os.path.join(out, parts[0])) as f:
        records = [json.loads(line) for line in f]
    assert [r["session"] for r in records] == sessions[:3]
    assert [r["recommended"] for r in records] == [top1(item_model, s) for s in sessions[:3]]
    assert all(schema_gaps(r, record_schema(task="recommendation")) == [] for r in records)
    assert "'x'" in read_errors(out)[0]["reason"]
    with pytest.raises(BatchError, match="labels is an option of the text tasks"):
        explainer_spec(model_dir, task="recommendation", labels=["a", "b"], mask_item=MASK)
    rc, stdout, err = cli(str(inp), "--out", out, "--task", "recommendation", "--model", model_dir, "--mask-item",
                          str(MASK), "--dry-run")
    assert rc == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("rows: 0 to do, 4 already done")
    rc, stdout, err = cli(str(inp), "--out", str(tmp_path / "fresh"), "--task", "recommendation", "--model",
                          model_dir, "--mask-item", str(MASK), "--dry-run", "--max-size", "1")
    assert rc == 0, err
    lengths = sorted(len(s) for s in sessions[:3])
    assert f"items per session: min {lengths[0]}, median {lengths[1]}" in stdout
    assert "1 rows are not sessions of item ids" in stdout
    assert f"worst-case model sequences: {sum(lengths)} " in stdout
    assert not os.path.exists(tmp_path / "fresh")
