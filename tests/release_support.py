"""A tiny ``pretrained/`` folder laid out like the original release, written from random components.

Agent files use the release's peft 0.4 names (``llm.base_model.model...``) and leave out the frozen Llama
projections, which come from the ``Llama-2-7b-hf`` folder; de-tokenizer files hold the resampler and the
UNet's ``to_k``/``to_v`` only, the rest coming from the SD-XL folder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import LlamaForCausalLM

from seed_story.checkpoints.remap import PEFT_PREFIX, current_to_peft04
from seed_story.components import Components
from seed_story.models.mllm import llama_config

StateDict = dict[str, torch.Tensor]


def agent_file_state(mllm: nn.Module) -> StateDict:
    """What a released agent file holds: every weight but the frozen Llama projections, in peft 0.4 names."""
    state = current_to_peft04(mllm.state_dict())
    return {k: v for k, v in state.items() if "layers" not in k or "proj.weight" not in k or "lora" in k}


def adapter_file_state(detokenizer: nn.Module) -> StateDict:
    """What a released de-tokenizer file holds: the resampler and the UNet's to_k/to_v."""
    state = detokenizer.state_dict()
    return {k: v for k, v in state.items() if k.startswith("resampler.") or ".to_k." in k or ".to_v." in k}


def save_file_at(root: Path, rel: str, state: StateDict) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def write_release(root: Path, parts: Components) -> None:
    """Tokenizer, Llama-2 folder (base vocabulary), SD-XL folder, ViT, SEED-Story agent and adapted de-tokenizer."""
    cfg = parts.config
    parts.tokenizer.save_pretrained(root / "cvlm_llama2_tokenizer")
    # Llama folder with the base vocabulary; the agent file carries the grown embeddings.
    base_cfg = llama_config(cfg.mllm)
    base_cfg.vocab_size = cfg.mllm.llm.vocab_size
    base = LlamaForCausalLM(base_cfg)
    agent_state = current_to_peft04(parts.mllm.state_dict())
    base_state = {
        k[len(PEFT_PREFIX) :].replace(".modules_to_save.default", ""): v
        for k, v in agent_state.items()
        if k.startswith(PEFT_PREFIX) and "lora_" not in k and "original_module" not in k
    }
    base_state["model.embed_tokens.weight"] = base_state["model.embed_tokens.weight"][: base_cfg.vocab_size]
    base_state["lm_head.weight"] = base_state["lm_head.weight"][: base_cfg.vocab_size]
    base.load_state_dict(base_state, strict=True)
    base.save_pretrained(root / "Llama-2-7b-hf")
    sdxl = root / "stable-diffusion-xl-base-1.0"
    parts.detokenizer.unet.save_pretrained(sdxl / "unet")
    parts.vae.save_pretrained(sdxl / "vae")
    parts.scheduler.save_pretrained(sdxl / "scheduler")
    save_file_at(root, "visual_tokenizer/qwen_vit_G.pt", parts.visual_tokenizer.state_dict())
    save_file_at(root, "seed_story/george_sft/pytorch_model.bin", agent_file_state(parts.mllm))
    adapted = "detokenizer/detokenizer_george_adapted/checkpoint-4000/pytorch_model.bin"
    save_file_at(root, adapted, adapter_file_state(parts.detokenizer))
