"""Loading the released MLLM ("agent") checkpoints onto a Llama-2 base, strictly.

An agent file holds LoRA weights, the trained norm copies, the grown embeddings/lm_head and both
resamplers, in peft 0.4 names; the frozen Llama-2 weights come from the ``Llama-2-7b-hf`` folder.
The release has two: SEED-Story-George (``story``, the stage-2 result) and the SEED-X-pretrained 7B agent
(``seedx``, ``seedx/checkpoint-30000``) that the release's stage-2 script starts from.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaForCausalLM

from seed_story.checkpoints.layout import AgentRelease
from seed_story.checkpoints.remap import peft04_to_current
from seed_story.checkpoints.safe_load import load_state_dict_file
from seed_story.checkpoints.strict import AllowList, KeyReport, load_strict
from seed_story.config import MLLMConfig
from seed_story.models.mllm import SeedStoryMLLM, add_lora, build_llm

ROTARY_BUFFERS = AllowList(
    "rotary-buffers",
    ("*rotary_emb.inv_freq",),
    "RoPE frequencies are recomputed from the config; the original modeling file persisted them",
)
LLAMA_BASE = AllowList(
    "llama-base-weights",
    ("llm.base_model.model.model.layers.*.base_layer.weight", "llm.base_model.model.model.*original_module.weight"),
    "frozen Llama-2 weights, already loaded from the Llama-2 folder",
)
# The release's stage-2 config (agent_7b_seedx_pretrained.yaml) builds the SEED-X agent exactly like SEED-Story's
# (same resamplers, on the r16 LoRA Llama of llama2chat7b_lora.yaml with 32066 tokens), then loads the file with
# load_state_dict(strict=False). That skips absent and unknown names, but torch still raises on a shape mismatch,
# so every tensor that run loaded had SEED-Story's shape: a rank-32 LoRA (SEED-X-17B's config) or 32330 tokens /
# 5120-wide resamplers fail here as they would have there. Names it would have left at their fresh values (a zero
# LoRA, copies of Llama's norms, random image-token rows) we require: without them it is not SEED-X's init.
# The one name accepted beyond the SEED-Story agent's is SEED-X's own parameter:
SEEDX_PATCH_POSITIONS = AllowList(
    "seedx-patch-positions",
    ("patch_pos_embed",),
    "SEED-X's any-resolution sub-image position embedding; SEED-Story feeds whole images and has no slot for it "
    "(the release's non-strict load dropped it)",
)

_WHAT: dict[str, str] = {"story": "agent checkpoint", "seedx": "SEED-X agent checkpoint"}


def agent_allow_lists(release: AgentRelease, *, llama_dir: bool) -> tuple[list[AllowList], list[AllowList]]:
    """The (missing, unexpected) allow-lists for a released agent file; ``llama_dir``: base weights come from there."""
    unexpected = [ROTARY_BUFFERS, SEEDX_PATCH_POSITIONS] if release == "seedx" else [ROTARY_BUFFERS]
    return ([LLAMA_BASE] if llama_dir else []), unexpected


def load_llama(llama_dir: str | Path, cfg: MLLMConfig, *, dtype: torch.dtype = torch.float32) -> LlamaForCausalLM:
    """Load the base Llama from a local HF folder, check it is the configured size, grow the vocabulary."""
    llm = LlamaForCausalLM.from_pretrained(str(llama_dir), dtype=dtype, local_files_only=True)
    want, got = cfg.llm, llm.config
    wrong = [
        f"{name}: folder has {getattr(got, name)}, preset expects {getattr(want, name)}"
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        if getattr(got, name) != getattr(want, name)
    ]
    if got.vocab_size not in (want.vocab_size, cfg.vocab_size):
        wrong.append(f"vocab_size: folder has {got.vocab_size}, expected {want.vocab_size} or {cfg.vocab_size}")
    if wrong:
        raise ValueError(f"{llama_dir} is not the LLM this preset needs:\n  " + "\n  ".join(wrong))
    if got.vocab_size != cfg.vocab_size:
        llm.resize_token_embeddings(cfg.vocab_size, mean_resizing=False)
    return llm


def load_agent(
    agent_path: str | Path,
    cfg: MLLMConfig,
    *,
    llama_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    merge_lora: bool = False,
    release: AgentRelease = "story",
) -> tuple[SeedStoryMLLM, KeyReport]:
    """Build the MLLM and load an agent checkpoint (released peft 0.4 names or this project's names).

    With ``llama_dir`` the frozen base weights come from that folder and may be absent from the agent
    file; without it the agent file must hold every weight. ``merge_lora=True`` folds LoRA and the norm
    copies into a plain ``LlamaForCausalLM`` after loading (faster inference, no peft wrapper).
    ``release="seedx"`` reads the SEED-X-pretrained agent (stage 2's starting point), which may also carry
    SEED-X's patch-position embedding.

    Example::

        mllm, report = load_agent("pretrained/seed_story/george_sft/pytorch_model.bin", cfg.mllm,
                                  llama_dir="pretrained/Llama-2-7b-hf", dtype=torch.float16)
    """
    llm = add_lora(load_llama(llama_dir, cfg, dtype=dtype), cfg.lora) if llama_dir is not None else build_llm(cfg)
    mllm = SeedStoryMLLM(cfg, llm=llm).to(dtype)
    state = peft04_to_current(load_state_dict_file(agent_path), mllm.state_dict().keys())
    missing, unexpected = agent_allow_lists(release, llama_dir=llama_dir is not None)
    report = load_strict(
        mllm,
        state,
        what=f"{_WHAT[release]} {agent_path}",
        allow_missing=missing,
        allow_unexpected=unexpected,
    )
    if merge_lora:
        mllm.llm = mllm.llm.merge_and_unload()
    return mllm, report
