"""AttentionCapture on tiny random models of five families and on the real MiniLM weights."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from cleann.hf import AttentionCapture, CaptureError, attention_modules  # noqa: E402

ATOL = 1e-5


def tiny(kind):
    common = dict(vocab_size=99)
    if kind == "bert":
        return transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                              intermediate_size=37, **common))
    if kind == "roberta":
        return transformers.RobertaModel(transformers.RobertaConfig(hidden_size=32, num_hidden_layers=2,
                                                                    num_attention_heads=4, intermediate_size=37,
                                                                    **common))
    if kind == "distilbert":
        return transformers.DistilBertModel(transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=37,
                                                                          **common))
    if kind == "gpt2":
        return transformers.GPT2Model(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, bos_token_id=1,
                                                              eos_token_id=2, **common))
    if kind == "llama":
        return transformers.LlamaModel(transformers.LlamaConfig(hidden_size=32, num_hidden_layers=2,
                                                                num_attention_heads=4, num_key_value_heads=2,
                                                                intermediate_size=37, **common))
    raise ValueError(kind)


def eager_twin(model, kind):
    twin = tiny(kind)
    twin.load_state_dict(model.state_dict())
    twin.set_attn_implementation("eager")
    return twin.eval()


KINDS = ["bert", "roberta", "distilbert", "gpt2", "llama"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layer", [-1, 0])
def test_matches_eager_attention_on_a_padded_batch(kind, layer):
    torch.manual_seed(0)
    model = tiny(kind).eval()
    ids = torch.randint(3, 90, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    before = model.config._attn_implementation
    config_before = model.config.to_dict()
    with torch.no_grad(), AttentionCapture(model, layer=layer) as cap:
        out = model(input_ids=ids, attention_mask=mask)
    assert model.config._attn_implementation == before
    assert model.config.to_dict() == config_before
    with torch.no_grad():
        ref = eager_twin(model, kind)(input_ids=ids, attention_mask=mask, output_attentions=True)
        plain = model(input_ids=ids, attention_mask=mask)
    want = ref.attentions[layer]
    assert cap.attention.shape == want.shape == (3, 4, 9, 9)
    err = float((cap.attention - want).abs().max())
    assert err < ATOL, f"max abs error {err:.3e}"
    assert cap.lengths.tolist() == [9, 6, 4]
    assert cap.key_mask[1].tolist() == [True] * 6 + [False] * 3
    # the forward pass itself is unchanged, and the model runs as before afterwards
    assert float((out.last_hidden_state - plain.last_hidden_state).abs().max()) < ATOL


def test_gpt2_left_padding_with_position_ids():
    torch.manual_seed(1)
    model = tiny("gpt2").eval()
    ids = torch.randint(3, 90, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, :3] = 0  # left padding
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad(), AttentionCapture(model) as cap:
        model(input_ids=ids, attention_mask=mask, position_ids=pos)
        ref = eager_twin(model, "gpt2")(input_ids=ids, attention_mask=mask, position_ids=pos, output_attentions=True)
    assert float((cap.attention - ref.attentions[-1]).abs().max()) < ATOL
    assert cap.key_mask[1].tolist() == [False] * 3 + [True] * 5
    # valid rows put no mass on the pad columns
    assert float(cap.attention[1, :, 3:, :3].abs().max()) == 0.0


def test_model_restored_after_an_error():
    model = tiny("bert").eval()
    with pytest.raises(ZeroDivisionError):
        with AttentionCapture(model):
            1 / 0
    assert model.config._attn_implementation == "sdpa"
    out = model(input_ids=torch.tensor([[5, 6, 7]]), output_attentions=True)
    assert len(out.attentions) == 0  # back on sdpa, which returns no weights


def test_layers_found_in_forward_order_and_errors():
    model = tiny("bert")
    mods = attention_modules(model)
    assert len(mods) == 2 and mods[0] is model.encoder.layer[0].attention.self
    with pytest.raises(CaptureError, match="layer 5 out of range"):
        AttentionCapture(model, layer=5)
    with AttentionCapture(model):
        with pytest.raises(CaptureError, match="already being captured"):
            with AttentionCapture(model):
                pass
    with pytest.raises(CaptureError, match="_can_record_outputs"):
        AttentionCapture(torch.nn.Linear(3, 3))


def test_real_minilm_weights(minilm):
    model, tok, path = minilm
    batch = tok(["The film was a delight from start to finish.", "Terrible."], padding=True, return_tensors="pt")
    with torch.no_grad(), AttentionCapture(model) as cap:
        model(**batch)
        twin = transformers.AutoModel.from_pretrained(path, attn_implementation="eager").eval()
        ref = twin(**batch, output_attentions=True)
    assert cap.attention.shape[1] == 12
    assert float((cap.attention - ref.attentions[-1]).abs().max()) < ATOL
    assert cap.lengths.tolist() == batch["attention_mask"].sum(1).tolist()
