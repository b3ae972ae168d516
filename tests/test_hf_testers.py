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
    assert tester.candidates == len(sets)
    assert tester.forward_passes == 1 + -(-len(sets) // 7)
    assert tester.test_batch(sets[::-1]) == want[::-1]  # answered from the cache
    assert tester.forward_passes == 1 + -(-len(sets) // 7) and tester.candidates == len(sets)
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
