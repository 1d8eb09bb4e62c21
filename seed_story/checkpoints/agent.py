"""Loading the released MLLM ("agent") checkpoint onto a Llama-2 base, strictly.

The agent file holds LoRA weights, the trained norm copies, the grown embeddings/lm_head and both
resamplers, in peft 0.4 names; the frozen Llama-2 weights come from the ``Llama-2-7b-hf`` folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaForCausalLM

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
) -> tuple[SeedStoryMLLM, KeyReport]:
    """Build the MLLM and load an agent checkpoint (released peft 0.4 names or this project's names).

    With ``llama_dir`` the frozen base weights come from that folder and may be absent from the agent
    file; without it the agent file must hold every weight. ``merge_lora=True`` folds LoRA and the norm
    copies into a plain ``LlamaForCausalLM`` after loading (faster inference, no peft wrapper).

    Example::

        mllm, report = load_agent("pretrained/seed_story/george_sft/pytorch_model.bin", cfg.mllm,
                                  llama_dir="pretrained/Llama-2-7b-hf", dtype=torch.float16)
    """
    llm = add_lora(load_llama(llama_dir, cfg, dtype=dtype), cfg.lora) if llama_dir is not None else build_llm(cfg)
    mllm = SeedStoryMLLM(cfg, llm=llm).to(dtype)
    state = peft04_to_current(load_state_dict_file(agent_path), mllm.state_dict().keys())
    report = load_strict(
        mllm,
        state,
        what=f"agent checkpoint {agent_path}",
        allow_missing=[LLAMA_BASE] if llama_dir is not None else [],
        allow_unexpected=[ROTARY_BUFFERS],
    )
    if merge_lora:
        mllm.llm = mllm.llm.merge_and_unload()
    return mllm, report
