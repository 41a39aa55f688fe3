"""Model anatomy per family: tiny random configs of every known family run head, head top-1 and full."""

import pytest
import torch
from transformers import MistralConfig, MistralForCausalLM

from harness.backbone import FAMILIES, anatomy, block_parameters, decoder_parameters, top_blocks_only
from harness.cells import draw_for, fit_data
from harness.errors import HarnessError
from harness.models import LoadedModel
from harness.prompts import load_template
from harness.regimes import get_regime
from harness.regimes.features import FeatureStore
from harness.regimes.full import FullSettings
from harness.regimes.protocol import Shared
from harness.regimes.head import HeadSettings
from harness.tasks import load_examples, load_task
from harness.types import Cell
from tiny import tiny_family_model

FAMILY_NAMES = sorted(FAMILIES)


@pytest.fixture(scope="module", params=FAMILY_NAMES)
def family_model(request, tokenizer):
    return tiny_family_model(request.param, len(tokenizer))


def _batch(tokenizer):
    encoded = tokenizer(["the movie was very good and the plot was great", "bad acting"], padding=True,
                        return_tensors="pt")
    return encoded["input_ids"], encoded["attention_mask"]


def test_every_family_has_its_parts(family_model):
    parts = anatomy(family_model)
    assert len(parts.blocks) == 2 and parts.hidden_size == 32
    blocks = sum(p.numel() for p in parts.blocks.parameters()) + sum(p.numel() for p in parts.final_norm.parameters())
    assert block_parameters(family_model) == blocks
    assert decoder_parameters(family_model) == sum(p.numel() for p in family_model.get_decoder().parameters())


@pytest.mark.parametrize("top", [1, 2])
def test_top_blocks_run_on_cached_hidden_states_equal_the_whole_forward(family_model, tokenizer, top):
    parts = anatomy(family_model)
    ids, mask = _batch(tokenizer)
    with torch.no_grad():
        whole = parts.decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        entering = whole.hidden_states[len(parts.blocks) - top]
        with top_blocks_only(parts, torch.nn.ModuleList(parts.blocks[-top:]), parts.final_norm):
            resumed = parts.decoder(inputs_embeds=entering, attention_mask=mask, use_cache=False).last_hidden_state
    real = mask.bool()
    assert torch.allclose(resumed[real], whole.last_hidden_state[real], atol=1e-5)
    assert len(parts.blocks) == 2  # the swap is undone


@pytest.mark.parametrize("regime_name, settings", [
    ("head", HeadSettings(c_grid=(0.1, 1.0))),
    ("head", HeadSettings(unfreeze_top=1, max_steps=2)),
    ("full", FullSettings(max_steps=2, batch_size=4, eval_every=1, learning_rates=(1e-3,))),
])
def test_head_and_full_run_on_every_family(toy_env, family_model, tokenizer, regime_name, settings):
    task = load_task("toy")
    template = load_template(task, "cloze")
    regime = get_regime(regime_name)
    cell = Cell("toy", "cloze", regime_name, 2, 13)
    draw = draw_for(cell, regime, settings, 1, load_examples(task, "train"), [], task)
    test = load_examples(task, "test")
    lm = LoadedModel(family_model, tokenizer, {"source": "test"}, "cpu", "float32")
    run = regime.run(lm, Shared(FeatureStore(family_model, tokenizer)), template, fit_data(draw, test, task, cell),
                     settings, False)
    assert [p.id for p in run.predictions] == [e.id for e in test]
    assert all(abs(sum(p.probs) - 1) < 1e-5 and p.gold is None for p in run.predictions)
    assert run.cost.trainable_parameters > 0 and run.cost.train_flops > 0


def test_another_family_is_one_clear_error(tokenizer):
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2)
    model = MistralForCausalLM(config)
    with pytest.raises(HarnessError, match="model family 'mistral' is not supported by head/full"):
        anatomy(model)
    # prompting still counts its cost: everything but the input embeddings and the untied LM head
    embeddings = model.get_input_embeddings().weight.numel()
    lm_head = model.get_output_embeddings().weight.numel()
    assert block_parameters(model) == sum(p.numel() for p in model.parameters()) - embeddings - lm_head
