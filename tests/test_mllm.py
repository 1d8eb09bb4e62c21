"""The MLLM: masks, losses and the released key layout."""

from __future__ import annotations

import pytest
import torch

from seed_story.checkpoints.remap import current_to_peft04
from seed_story.interleave import image_slot_mask
from seed_story.models.mllm import SeedStoryMLLM, centered_cosine_regression_loss, cosine_regression_loss
from seed_story.storyworld.toy import story_batch
from seed_story.tokenizer import ImageTokenIds, build_byte_tokenizer


@pytest.fixture
def setup(tiny_config):
    cfg = tiny_config
    tok = build_byte_tokenizer(cfg.mllm.num_image_tokens)
    ids = ImageTokenIds.from_tokenizer(tok, cfg.mllm.num_image_tokens)
    model = SeedStoryMLLM(cfg.mllm)
    # LoRA B starts at zero; give it values so the LoRA path is exercised.
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    stories = [["A fox wakes up.", "It sees a bird.", "They play."], ["Rain falls.", "A frog sings."]]
    batch = story_batch(tok, ids, stories, cfg.vision.n_queries, cfg.vision.output_dim)
    return cfg, tok, ids, model, batch


def test_forward_backward_trains_the_right_parameters(setup):
    _, _, _, model, batch = setup
    out = model(**batch.as_kwargs())
    assert torch.isfinite(out.loss) and out.lm_loss > 0 and 0 < out.rec_loss < 2
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in grads) and all(g is not None for n, g in grads.items() if "lora" in n)
    for part in ("input_resampler.query", "output_resampler.query", "embed_tokens.weight", "lm_head.weight"):
        g = next(g for n, g in grads.items() if n.endswith(part))
        assert g is not None and g.abs().sum() > 0, part
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("base_layer" in n for n in frozen) and any(n.endswith("pos_embed") for n in frozen)
    assert not any("lora_" in n for n in frozen)


def test_context_images_fill_their_slots_in_row_major_order(setup):
    _, _, _, model, batch = setup
    embeds = model.embed_inputs(batch.input_ids, batch.image_embeds, batch.ids_cmp_mask, batch.embeds_cmp_mask)
    plain = model.language_model.embed_tokens(batch.input_ids)
    resampled = model.input_resampler(batch.image_embeds)
    n = model.num_image_tokens
    # Story 0 has context images 0 and 1 (image 2 is its target); story 1 has context image 3.
    for row, image in ((0, 0), (0, 1), (1, 3)):
        nth = {0: 0, 1: 1, 3: 0}[image]
        pos = batch.ids_cmp_mask[row].nonzero().flatten()[nth * n : (nth + 1) * n]
        torch.testing.assert_close(embeds[row, pos], resampled[image])
    outside = ~batch.ids_cmp_mask
    torch.testing.assert_close(embeds[outside], plain[outside])
    # The target image keeps the learned embeddings of its image tokens.
    torch.testing.assert_close(embeds[batch.ids_gen_mask], plain[batch.ids_gen_mask])


def test_losses_match_independent_computation(setup):
    _, _, _, model, batch = setup
    out = model(**batch.as_kwargs(), return_recon_image_embeds=True)
    embeds = model.embed_inputs(batch.input_ids, batch.image_embeds, batch.ids_cmp_mask, batch.embeds_cmp_mask)
    ref = model.causal_lm(
        inputs_embeds=embeds, attention_mask=batch.attention_mask, labels=batch.labels, output_hidden_states=True
    )
    torch.testing.assert_close(out.lm_loss, ref.loss)
    last = ref.hidden_states[-1]
    targets = batch.image_embeds[batch.embeds_gen_mask]
    recon = model.output_resampler(last[batch.ids_gen_mask].view(len(targets), model.num_image_tokens, -1))
    torch.testing.assert_close(out.recon_image_embeds, recon)
    cos = torch.nn.functional.cosine_similarity(recon, targets, dim=-1)
    torch.testing.assert_close(out.rec_loss, (1 - cos).mean())
    torch.testing.assert_close(out.loss, out.lm_loss + out.rec_loss)


def test_centered_cosine_is_about_the_batch_mean_picture(setup):
    cfg, _, _, _, batch = setup
    model = SeedStoryMLLM(cfg.mllm.model_copy(update={"rec_loss": "centered_cosine"}))
    out = model(**batch.as_kwargs(), return_recon_image_embeds=True)
    unit = torch.nn.functional.normalize
    centre = unit(batch.image_embeds, dim=-1).mean(0)
    targets = batch.image_embeds[batch.embeds_gen_mask]
    p, t = unit(out.recon_image_embeds, dim=-1) - centre, unit(targets, dim=-1) - centre
    centered = (1 - torch.nn.functional.cosine_similarity(p, t, dim=-1)).mean()
    torch.testing.assert_close(out.rec_loss, centered)
    # cosine_and_centered: the sum of the reference's cosine and the centred one, same weights.
    model = SeedStoryMLLM(cfg.mllm.model_copy(update={"rec_loss": "cosine_and_centered"}))
    both = model(**batch.as_kwargs(), return_recon_image_embeds=True)
    p, t = unit(both.recon_image_embeds, dim=-1), unit(targets, dim=-1)
    plain = (1 - torch.nn.functional.cosine_similarity(p, t, dim=-1)).mean()
    centered = (1 - torch.nn.functional.cosine_similarity(p - centre, t - centre, dim=-1)).mean()
    torch.testing.assert_close(both.rec_loss, plain + centered)


def test_centered_cosine_weighs_what_differs_from_the_mean():
    torch.manual_seed(0)
    shared = torch.randn(1, 8, 32) * 5
    target = shared + torch.randn(4, 8, 32)
    centre = torch.nn.functional.normalize(target, dim=-1).mean(0)
    assert centered_cosine_regression_loss(target, target, centre) < 1e-6  # the minimum is still p = t
    wrong = shared + torch.randn(4, 8, 32)  # right background, wrong details
    plain, centered = cosine_regression_loss(wrong, target), centered_cosine_regression_loss(wrong, target, centre)
    assert plain < 0.05 and centered > 0.5


def test_labels_supervise_only_the_response(setup):
    _, tok, ids, _, batch = setup
    row = batch.labels[1]
    supervised = batch.input_ids[1][row != -100].tolist()
    assert tok.decode(supervised[:-2]) == "[INST]A frog sings."
    assert supervised[-2:] == [ids.boi, tok.eos_token_id]


def test_slot_mask_rejects_malformed_pictures(setup):
    _, _, ids, _, _ = setup
    good = torch.tensor([1, ids.boi, *ids.image, ids.eoi, 5])
    assert image_slot_mask(good, ids).sum() == len(ids.image)
    with pytest.raises(ValueError, match="never closed"):
        image_slot_mask(good[:-2], ids)
    with pytest.raises(ValueError, match="exactly"):
        image_slot_mask(torch.tensor([ids.boi, *ids.image[:3], ids.eoi]), ids)


def test_mismatched_context_count_is_reported(setup):
    _, _, _, model, batch = setup
    with pytest.raises(ValueError, match="context image"):
        model.embed_inputs(batch.input_ids, batch.image_embeds[:2], batch.ids_cmp_mask, batch.embeds_cmp_mask[:2])


def test_real_preset_key_layout_and_sizes(george_config):
    with torch.device("meta"):
        model = SeedStoryMLLM(george_config.mllm)
    shapes = {k: tuple(v.shape) for k, v in current_to_peft04(model.state_dict()).items()}
    p = "llm.base_model.model."
    layer = p + "model.layers.31."
    expected = {
        p + "model.embed_tokens.weight": (32066, 4096),
        p + "lm_head.weight": (32066, 4096),
        layer + "self_attn.q_proj.weight": (4096, 4096),
        layer + "self_attn.q_proj.lora_A.default.weight": (16, 4096),
        layer + "self_attn.q_proj.lora_B.default.weight": (4096, 16),
        layer + "mlp.gate_proj.lora_B.default.weight": (11008, 16),
        layer + "mlp.down_proj.lora_A.default.weight": (16, 11008),
        layer + "mlp.down_proj.weight": (4096, 11008),
        layer + "input_layernorm.original_module.weight": (4096,),
        layer + "input_layernorm.modules_to_save.default.weight": (4096,),
        layer + "post_attention_layernorm.modules_to_save.default.weight": (4096,),
        p + "model.norm.original_module.weight": (4096,),
        p + "model.norm.modules_to_save.default.weight": (4096,),
        "input_resampler.query": (64, 4096),
        "input_resampler.attn.in_proj_weight": (12288, 4096),
        "output_resampler.query": (256, 4096),
        "output_resampler.pos_embed": (256, 4096),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert not any("kv_proj" in k for k in shapes)  # kv_dim == embed_dim: Identity, no weights
    assert not any("layers.32." in k for k in shapes)
    lora = sum(v.numel() for k, v in model.named_parameters() if "lora_" in k)
    assert lora == 1_249_280 * 32
    assert sum(v.numel() for v in model.input_resampler.parameters()) == pytest.approx(67.7e6, rel=2e-3)
    assert sum(v.numel() for v in model.output_resampler.parameters()) == pytest.approx(69.2e6, rel=2e-3)
