"""Strict, safe loading of the released agent layout (peft 0.4 names) onto a Llama-2 folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

from seed_story.checkpoints.agent import load_agent
from seed_story.checkpoints.remap import current_to_peft04, merge_lora_state_dict
from seed_story.checkpoints.safe_load import UnsafeCheckpointError, load_state_dict_file
from seed_story.checkpoints.strict import CheckpointMismatchError
from seed_story.models.mllm import SeedStoryMLLM, add_lora, llama_config
from seed_story.storyworld.toy import story_batch
from seed_story.tokenizer import ImageTokenIds, build_byte_tokenizer


@pytest.fixture
def released(tmp_path: Path, tiny_config):
    """A Llama-2 folder (base vocab) and an agent .bin in the release's naming, without base weights."""
    cfg = tiny_config.mllm
    base = LlamaForCausalLM(llama_config(cfg).__class__(**{**llama_config(cfg).to_dict(), "vocab_size": 259}))
    base.save_pretrained(tmp_path / "Llama-2-7b-hf")
    trained = LlamaForCausalLM.from_pretrained(tmp_path / "Llama-2-7b-hf")
    trained.resize_token_embeddings(cfg.vocab_size, mean_resizing=False)
    reference = SeedStoryMLLM(cfg, llm=add_lora(trained, cfg.lora))
    with torch.no_grad():
        for p in reference.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    state = current_to_peft04(reference.state_dict())
    state = {k: v for k, v in state.items() if not (k.endswith("proj.weight") and ".layers." in k and "lora" not in k)}
    state = {k: v for k, v in state.items() if "original_module" not in k}
    state["llm.base_model.model.model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    path = tmp_path / "george_sft" / "pytorch_model.bin"
    path.parent.mkdir()
    torch.save(state, path)
    tok = build_byte_tokenizer(cfg.num_image_tokens)
    batch = story_batch(
        tok,
        ImageTokenIds.from_tokenizer(tok, cfg.num_image_tokens),
        [["One.", "Two.", "Three."]],
        tiny_config.vision.n_queries,
        tiny_config.vision.output_dim,
    )
    return cfg, tmp_path / "Llama-2-7b-hf", path, state, reference.eval(), batch


def test_loads_release_layout_and_reproduces_outputs(released):
    cfg, llama, path, _, reference, batch = released
    model, report = load_agent(path, cfg, llama_dir=llama)
    assert report.allowed_missing["llama-base-weights"] > 0
    assert report.allowed_unexpected == {"rotary-buffers": 1}
    got = model.eval()(**batch.as_kwargs(), return_logits=True)
    want = reference(**batch.as_kwargs(), return_logits=True)
    torch.testing.assert_close(got.logits, want.logits)
    torch.testing.assert_close(got.rec_loss, want.rec_loss)


def test_merged_lora_gives_the_same_model(released):
    cfg, llama, path, _, reference, batch = released
    merged, _ = load_agent(path, cfg, llama_dir=llama, merge_lora=True)
    assert isinstance(merged.llm, LlamaForCausalLM)
    assert not any("lora" in k for k in merged.state_dict())
    want = reference(**batch.as_kwargs(), return_logits=True).logits
    torch.testing.assert_close(merged.eval()(**batch.as_kwargs(), return_logits=True).logits, want)
    # The state-dict merge (no peft involved) agrees too, given the base weights.
    full = current_to_peft04(reference.state_dict())
    llama_sd, other = merge_lora_state_dict(full, cfg.lora.scaling)
    assert set(other) == {k for k in full if k.startswith(("input_resampler", "output_resampler"))}
    plain = LlamaForCausalLM(llama_config(cfg))
    plain.load_state_dict(llama_sd, strict=True)
    torch.testing.assert_close(plain.lm_head.weight, merged.lm_head.weight)
    torch.testing.assert_close(
        plain.model.layers[1].mlp.down_proj.weight, merged.causal_lm.model.layers[1].mlp.down_proj.weight
    )


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda s: s.pop("input_resampler.query"), "1 missing key(s): input_resampler.query"),
        (lambda s: s.__setitem__("input_resampler.extra", torch.zeros(1)), "unexpected key(s): input_resampler.extra"),
        (
            lambda s: s.__setitem__("output_resampler.query", torch.zeros(3, 64)),
            "output_resampler.query: checkpoint (3, 64) vs model (64, 64)",
        ),
    ],
)
def test_bad_checkpoints_name_the_offending_key(released, tmp_path, edit, needle):
    cfg, llama, _, state, _, _ = released
    broken = dict(state)
    edit(broken)
    path = tmp_path / "broken.bin"
    torch.save(broken, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_agent(path, cfg, llama_dir=llama)
    assert needle in str(err.value)


def test_without_llama_folder_base_weights_are_required(released):
    cfg, _, path, _, _, _ = released
    with pytest.raises(CheckpointMismatchError, match="missing key"):
        load_agent(path, cfg)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.bin"
    torch.save({"weight": torch.zeros(1), "payload": _Exploit(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match="could execute code"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_sharded_safetensors_index(tmp_path):
    a, b = {"x.weight": torch.ones(2)}, {"y.weight": torch.zeros(3)}
    save_file(a, tmp_path / "m-1.safetensors")
    save_file(b, tmp_path / "m-2.safetensors")
    index = {"weight_map": {"x.weight": "m-1.safetensors", "y.weight": "m-2.safetensors"}}
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(index))
    loaded = load_state_dict_file(tmp_path / "m.safetensors.index.json")
    assert set(loaded) == {"x.weight", "y.weight"} and loaded["y.weight"].shape == (3,)
