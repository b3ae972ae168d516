"""Explanation testers: batched answers equal one forward pass per candidate, counts, bad input."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import cleann  # noqa: E402
from cleann.hf import (  # noqa: E402
    AttentionCapture,
    MaskedTokenTester,
    NextTokenTester,
    SequenceClassificationTester,
    ZeroShotTester,
)
from cleann.hf.testers import score_many  # noqa: E402

BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99,
            pad_token_id=0)


def _direct(model, ids, positions, replacement, read):
    x = ids.clone()
    if positions:
        x[positions] = replacement
    with torch.no_grad():
        return read(model(input_ids=x[None]))


def _sets(n, exclude=()):
    pool = [v for v in range(n) if v not in exclude]
    return [[v] for v in pool] + [[a, b] for a in pool for b in pool if a < b][:25] + [[]]


def test_masked_token_tester_matches_direct_passes():
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(transformers.BertConfig(**BERT)).eval()
    ids = torch.randint(5, 90, (10,))
    tester = MaskedTokenTester(model, ids, target=4, mask_token_id=3, batch_size=7)
    base = ids.clone()
    base[4] = 3
    read = lambda out: int(out.logits[0, 4].argmax())
    original = _direct(model, base, [], 0, read)
    sets = _sets(10, exclude=[4])
    answers = tester.test_batch(sets, 4)
    want = [_direct(model, base, s, 0, read) != original for s in sets]
    assert answers == want and not answers[-1]  # replacing nothing changes nothing
    # the empty set is the unmodified input: answered by the first pass, not sent again
    assert tester.candidates == len(sets) - 1
    assert tester.forward_passes == 1 + -(-(len(sets) - 1) // 7)
    assert tester.test_batch(sets[::-1]) == want[::-1]  # answered from the cache
    assert tester.forward_passes == 1 + -(-(len(sets) - 1) // 7) and tester.candidates == len(sets) - 1
    with pytest.raises(ValueError, match="cannot be replaced"):
        tester.test_batch([[4]])
    with pytest.raises(ValueError, match="outside the input"):
        tester.test_batch([[10]])


def test_sequence_classification_and_next_token_testers():
    torch.manual_seed(1)
    clf = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **BERT)).eval()
    ids = torch.randint(5, 90, (8,))
    t = SequenceClassificationTester(clf, ids, batch_size=4, protected=[0])
    read = lambda out: int(out.logits[0].argmax())
    sets = _sets(8, exclude=[0])
    assert t.test_batch(sets) == [_direct(clf, ids, s, 0, read) != read(clf(input_ids=ids[None])) for s in sets]
    lm = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99,
                                                             bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()
    nt = NextTokenTester(lm, ids, batch_size=5)
    read = lambda out: int(out.logits[0, -1].argmax())
    assert nt.test_batch(sets) == [_direct(lm, ids, s, 0, read) != read(lm(input_ids=ids[None])) for s in sets]


def test_zero_shot_tester_on_minilm_with_explain(minilm):
    model, tok, _ = minilm
    enc = tok("The movie was wonderful and the actors were brilliant.", return_tensors="pt")
    tester = ZeroShotTester(model, tok, enc["input_ids"], ["positive", "negative"], batch_size=16,
                            protected=[0])
    assert tester.labels[int(tester.prediction)] == "positive"
    with torch.no_grad(), AttentionCapture(model) as cap:
        model(**enc)
    n = enc["input_ids"].shape[1]
    graphs = cleann.abcd(cap.attention[0], model.config.hidden_size, nodes=list(range(1, n - 1)) + [0])
    g = graphs[0]
    ex = cleann.explain(g, 0, tester, max_size=2)
    assert ex.model_calls == tester.forward_passes - 1  # one batched pass per call, after the prediction
    assert ex.candidates_tried == tester.candidates > 0
    for s in ex.sets:  # every explanation is re-verified by the tester
        assert tester(list(s))
    with pytest.raises(ValueError, match="at least two labels"):
        ZeroShotTester(model, tok, enc["input_ids"], ["positive"])
    with pytest.raises(ValueError, match="distinct"):
        ZeroShotTester(model, tok, enc["input_ids"], ["a", "a"])


def _margin(scores, pred):
    others = [s for k, s in enumerate(scores) if k != pred]
    return scores[pred] - max(others)


def test_margins_equal_direct_passes_and_agree_with_answers():
    torch.manual_seed(2)
    clf = transformers.BertForSequenceClassification(transformers.BertConfig(num_labels=3, **BERT)).eval()
    mlm = transformers.BertForMaskedLM(transformers.BertConfig(**BERT)).eval()
    lm = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=99,
                                                             bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval()
    ids = torch.randint(5, 90, (9,))
    base = ids.clone()
    base[3] = 4
    cases = [(SequenceClassificationTester(clf, ids, batch_size=4, protected=[0]), clf, ids,
              lambda out: out.logits[0], [0]),
             (MaskedTokenTester(mlm, ids, target=3, mask_token_id=4, batch_size=5), mlm, base,
              lambda out: out.logits[0, 3], [3]),
             (NextTokenTester(lm, ids, batch_size=6), lm, ids, lambda out: out.logits[0, -1], [])]
    for tester, model, x, read, exclude in cases:
        pred = int(_direct(model, x, [], 0, read).argmax())
        assert tester.prediction == pred
        sets = _sets(9, exclude=exclude)[:-1]
        margins = tester.score_batch(sets)
        want = [_margin(_direct(model, x, s, 0, read).double().tolist(), pred) for s in sets]
        assert max(abs(a - b) for a, b in zip(margins, want)) < 1e-5
        assert tester.test_batch(sets) == [m <= 0 for m in margins]
        assert tester.base_margin > 0 and abs(tester.base_margin - _margin(read(model(input_ids=x[None]))
                                                                           .double().tolist(), pred)) < 1e-5
    with pytest.raises(ValueError, match="must be integers"):
        cases[0][0].score_batch([[1.7]])
    with pytest.raises(ValueError, match="sequence of token positions"):
        cases[0][0].score_batch([3])


def test_score_many_packs_texts_of_different_lengths(minilm):
    model, tok, _ = minilm
    texts = ["A dull film.", "The actors were wonderful and the story moved me to tears.", "Fine."]
    alone, packed = [], []
    for t in texts:
        ids = tok(t, return_tensors="pt")["input_ids"]
        alone.append(ZeroShotTester(model, tok, ids, ["positive", "negative"], protected=[0], batch_size=4))
        packed.append(ZeroShotTester(model, tok, ids, ["positive", "negative"], protected=[0], lazy=True))
    requests = [(t, [[p] for p in range(1, t.input_ids.numel())] + [[1, 2]]) for t in packed]
    margins = score_many(requests, batch_size=64)
    for a, (p, sets), m in zip(alone, requests, margins):
        assert p.prediction == a.prediction
        want = a.score_batch(sets)
        assert max(abs(x - y) for x, y in zip(m, want)) < 1e-5
        assert p.test_batch(sets) == [x <= 0 for x in m]
        assert p.candidates == a.candidates == len(sets)
        assert p.forward_passes == 2  # the unmodified inputs together, then every set in one pass
    assert sum(a.forward_passes for a in alone) > 6
    with pytest.raises(ValueError, match="same model"):
        other = transformers.BertModel(transformers.BertConfig(**BERT)).eval()
        score_many([(packed[0], [[1]]), (SequenceClassificationTester(other, [5, 6, 7], lazy=True), [[1]])])
