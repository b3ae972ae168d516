"""Explaining a masked-item recommender: the tester against direct model calls, the explainer end to
end on a tiny BERT4Rec trained here on sessions with planted causes, and bad input."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cleann import ArgumentError  # noqa: E402
from cleann._learn import abcd  # noqa: E402
from cleann.hf import (AttentionCapture, MaskedItemTester, RecommenderExplainer, evaluate, synthetic_sessions,  # noqa: E402
                       train_bert4rec)
from cleann.hf.testers import score_many  # noqa: E402
from conftest import NUM_ITEMS  # noqa: E402


@pytest.fixture(scope="module")
def held_out(item_data):
    return item_data.sessions[500:]


def _direct_top(item_model, item_data, items, removed, removal):
    """The model's logits at the slot after removing ``removed`` positions, computed here."""
    if removal == "replace":
        ids = [item_data.pad_item if p in removed else i for p, i in enumerate(items)]
    else:
        ids = [i for p, i in enumerate(items) if p not in removed]
    ids = torch.as_tensor([ids + [item_data.mask_item]])
    with torch.no_grad():
        logits = item_model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1].double()
    logits[[item_data.pad_item, item_data.mask_item]] = -torch.inf
    return logits


def _margin(logits, item):
    others = logits.clone()
    others[item] = -torch.inf
    return float(logits[item] - others.max())


# -- the generator's rules ---------------------------------------------------------------------------


def test_synthetic_sessions_follow_their_rules(item_data):
    prequel_of = item_data.prequel_of
    assert item_data.sequel_of, "some items must be sequels"
    for s, parent in zip(item_data.sessions, item_data.parents):
        assert len(set(s)) == len(s)
        assert all(1 <= i <= NUM_ITEMS for i in s)
        for p, i in enumerate(s):
            if i in prequel_of:  # a sequel only ever follows its prequel
                assert prequel_of[i] in s[:p]
        assert parent == prequel_of.get(s[-1])
        if parent is not None:
            assert item_data.cause_positions(s[:-1], s[-1]) == [s.index(parent)]
    # prequels are mostly followed by their sequel
    followed = [item_data.sequel_of[a] in s[p + 1:] for s in item_data.sessions for p, a in enumerate(s)
                if a in item_data.sequel_of and p + 3 < len(s)]
    assert sum(followed) > 0.7 * len(followed)
    # sessions mostly stay in one genre
    dominant = [Counter(item_data.genre_of[i] for i in s).most_common(1)[0][1] / len(s) for s in item_data.sessions]
    assert sum(dominant) / len(dominant) > 0.6
    again = synthetic_sessions(600, NUM_ITEMS, seed=3, num_genres=4, max_length=9)
    assert again.sessions == item_data.sessions and again.sequel_of == item_data.sequel_of
    assert synthetic_sessions(600, NUM_ITEMS, seed=4, num_genres=4, max_length=9).sessions != item_data.sessions


def test_training_is_seeded():
    d = synthetic_sessions(40, 12, seed=1, num_genres=2, max_length=6)
    a = train_bert4rec(d.sessions, d.num_items, hidden=16, layers=1, heads=2, epochs=1, seed=5)
    b = train_bert4rec(d.sessions, d.num_items, hidden=16, layers=1, heads=2, epochs=1, seed=5)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


def test_tiny_model_beats_popularity(item_model, item_data, held_out):
    metrics = evaluate(item_model, held_out, k=10)
    popular = [i for i, _ in Counter(i for s in item_data.sessions[:500] for i in s).most_common(10)]
    baseline = sum(s[-1] in popular for s in held_out) / len(held_out)
    assert metrics["sessions"] == len(held_out)
    assert 0 <= metrics["ndcg"] <= metrics["hr"] <= 1
    assert metrics["hr"] > baseline + 0.15, (metrics, baseline)


# -- the tester against the model ----------------------------------------------------------------------


@pytest.mark.parametrize("removal", ["replace", "drop"])
def test_tester_verdicts_match_the_model(item_model, item_data, held_out, removal):
    rng = random.Random(7)
    changed = 0
    for session in held_out[:4]:
        items = session[:-1]
        tester = MaskedItemTester(item_model, items, mask_item=item_data.mask_item, removal=removal)
        base = _direct_top(item_model, item_data, items, set(), removal)
        assert tester.recommended == int(base.argmax())
        assert tester.base_margin == pytest.approx(_margin(base, tester.recommended), abs=1e-4)
        assert tester.top_items == torch.topk(base, 10).indices.tolist()
        sets = [tuple(sorted(rng.sample(range(len(items)), rng.randint(1, len(items))))) for _ in range(8)]
        sets.append(tuple(range(len(items))))
        margins = tester.score_batch(sets)
        verdicts = tester.test_batch(sets)
        for s, m, v in zip(sets, margins, verdicts):
            logits = _direct_top(item_model, item_data, items, set(s), removal)
            assert m == pytest.approx(_margin(logits, tester.recommended), abs=1e-4), s
            assert v == (int(logits.argmax()) != tester.recommended), s
            changed += v
    assert 0 < changed, "some random removals should change the recommendation"


@pytest.mark.parametrize("removal", ["replace", "drop"])
def test_score_many_packs_sessions_of_different_lengths(item_model, item_data, held_out, removal):
    sessions = [s[:-1] for s in held_out[:6]]
    packed = [MaskedItemTester(item_model, s, mask_item=item_data.mask_item, removal=removal, lazy=True) for s in sessions]
    sets = [[(0,), (0, 1), tuple(range(len(s) - 1))] for s in sessions]
    answers = score_many(list(zip(packed, sets)), batch_size=64)
    for s, ss, got in zip(sessions, sets, answers):
        alone = MaskedItemTester(item_model, s, mask_item=item_data.mask_item, removal=removal)
        assert got == pytest.approx(alone.score_batch(ss), abs=1e-4)
    assert sum(t.forward_passes for t in packed) < sum(len(x) for x in sets) + len(packed)


@pytest.mark.parametrize("removal", ["replace", "drop"])
def test_replacement_and_its_rank(item_model, item_data, held_out, removal):
    items = held_out[0][:-1]
    tester = MaskedItemTester(item_model, items, mask_item=item_data.mask_item, removal=removal, top_k=10)
    for s in [(0,), (len(items) - 1,), tuple(range(len(items)))]:
        item, rank = tester.replacement(s)
        logits = _direct_top(item_model, item_data, items, set(s), removal)
        assert item == int(logits.argmax())
        original = torch.topk(_direct_top(item_model, item_data, items, set(), removal), 10).indices.tolist()
        assert rank == (original.index(item) + 1 if item in original else None)
        if item != tester.recommended:
            assert rank != 1
    before = tester.candidates
    tester.replacement((0,))
    assert tester.candidates == before  # replacements are extra sequences, not candidates


# -- the explainer ------------------------------------------------------------------------------------


@pytest.mark.parametrize("search,removal", [("guided", "replace"), ("exact", "replace"), ("guided", "drop")])
def test_explainer_end_to_end(item_model, item_data, held_out, search, removal):
    sessions = [s[:-1] for s in held_out[:12]]
    ex = RecommenderExplainer(item_model, mask_item=item_data.mask_item, search=search, removal=removal,
                              max_size=3 if search == "exact" else None)
    results = ex.explain(sessions)
    assert len(results) == len(sessions)
    explained = 0
    for s, r in zip(sessions, results):
        base = _direct_top(item_model, item_data, s, set(), removal)
        assert r.recommended == int(base.argmax())
        assert r.abduced == s + [r.recommended]  # the abduction step appended the recommendation
        assert r.target == len(s)
        assert r.status in ("explained", "none", "budget")
        assert r.counts["candidates"] > 0 and r.counts["forward_passes"] > 0
        json.dumps(r.to_dict())
        for positions, items in zip(r.sets, r.items):
            assert r.target not in positions and all(0 <= p < len(s) for p in positions)
            assert items == tuple(s[p] for p in positions)
            assert int(_direct_top(item_model, item_data, s, set(positions), removal).argmax()) != r.recommended
        if r.sets:
            explained += 1
            assert r.size == min(len(x) for x in r.sets)
            new = int(_direct_top(item_model, item_data, s, set(r.sets[0]), removal).argmax())
            assert r.replacement == new != r.recommended
            assert r.replacement_rank == (r.top_items.index(new) + 1 if new in r.top_items else None)
        else:
            assert r.replacement is None and r.size is None
    assert explained > 0


def test_graphs_come_from_the_abduced_input(item_model, item_data, held_out):
    s = held_out[1][:-1]
    r = RecommenderExplainer(item_model, mask_item=item_data.mask_item).explain(s)
    ids = torch.as_tensor([r.abduced])
    with torch.no_grad(), AttentionCapture(item_model, -1) as cap:
        item_model(input_ids=ids, attention_mask=torch.ones_like(ids))
    graphs = abcd(cap.attention[0].float().numpy(), item_model.config.hidden_size, 0.01, nodes=list(range(len(s) + 1)))
    assert [h["edges"] for h in r.heads] == [[[int(g.nodes[a]), int(g.nodes[b]), ma, mb]
                                              for a, b, ma, mb in g.edges()] for g in graphs]
    for h in r.heads:
        assert r.target not in h["pool"]
        assert all(0 <= p < len(s) for p in h["pool"])


def test_planted_truth_recovery_is_computed(item_model, item_data, held_out):
    sessions = [s[:-1] for s in held_out]
    results = RecommenderExplainer(item_model, mask_item=item_data.mask_item).explain(sessions)
    caused = [(s, r) for s, r in zip(sessions, results) if item_data.cause_positions(s, r.recommended)]
    assert caused, "the tiny model should recommend some sequels whose prequel is in the session"
    hits = [bool(set(r.sets[0]) & set(item_data.cause_positions(s, r.recommended))) for s, r in caused if r.sets]
    recovery = sum(hits) / max(len(hits), 1)
    assert 0.0 <= recovery <= 1.0
    # removing the planted cause alone is a set the tester can judge directly
    s, r = caused[0]
    tester = MaskedItemTester(item_model, s, mask_item=item_data.mask_item)
    cause = item_data.cause_positions(s, r.recommended)
    assert tester.test_batch([cause])[0] == (int(_direct_top(item_model, item_data, s, set(cause), "replace").argmax())
                                            != r.recommended)


# -- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("items,match", [
    ([], "items is empty"),
    ([3, NUM_ITEMS + 5], "outside the model's item vocabulary"),
    ([3, NUM_ITEMS + 1], "holds the mask item"),
    ([3, 0, 4], "holds the padding item"),
    ([3, 2.5], "integer item ids"),
    ("abc", "list of item ids"),
])
def test_tester_rejects_bad_sessions(item_model, item_data, items, match):
    with pytest.raises(ArgumentError, match=match):
        MaskedItemTester(item_model, items, mask_item=item_data.mask_item)


def test_bad_options_are_named(item_model, item_data):
    with pytest.raises(ArgumentError, match="removal must be one of replace, drop"):
        MaskedItemTester(item_model, [1, 2], mask_item=item_data.mask_item, removal="delete")
    with pytest.raises(ArgumentError, match="removal"):
        RecommenderExplainer(item_model, mask_item=item_data.mask_item, removal="delete")
    with pytest.raises(ArgumentError, match="mask_item"):
        RecommenderExplainer(item_model, mask_item=NUM_ITEMS + 10)
    with pytest.raises(ArgumentError, match="top_k"):
        MaskedItemTester(item_model, [1, 2], mask_item=item_data.mask_item, top_k=0)
    with pytest.raises(ArgumentError, match="search"):
        RecommenderExplainer(item_model, mask_item=item_data.mask_item, search="greedy")
    with pytest.raises(ArgumentError, match="max_position_embeddings"):
        MaskedItemTester(item_model, list(range(1, NUM_ITEMS + 1)), mask_item=item_data.mask_item)
    ex = RecommenderExplainer(item_model, mask_item=item_data.mask_item)
    with pytest.raises(ArgumentError, match="sessions is empty"):
        ex.explain([])
    with pytest.raises(ArgumentError, match="items is empty"):
        ex.explain([[1, 2], []])
    with pytest.raises(ArgumentError, match="holds the mask item"):
        ex.explain([1, item_data.mask_item])
    with pytest.raises(ArgumentError, match="head 5 out of range"):
        RecommenderExplainer(item_model, mask_item=item_data.mask_item, heads=[5]).explain([1, 2, 3])
    with pytest.raises(ArgumentError, match="num_items"):
        synthetic_sessions(10, 2, seed=0)
