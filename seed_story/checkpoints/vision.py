"""The visual tokenizer's weights: loading ``qwen_vit_G.pt`` and extracting it from Qwen-VL-Chat.

The original extraction script instantiates Qwen-VL-Chat with ``trust_remote_code`` just to read one
sub-module's weights. We read the checkpoint shards directly instead: no remote code, no 9.6 B-parameter
model in memory, only the ``transformer.visual.`` tensors.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from seed_story.checkpoints.safe_load import StateDict, load_state_dict_file
from seed_story.checkpoints.strict import KeyReport, compare_keys, load_strict
from seed_story.config import VisionConfig
from seed_story.models.visual_tokenizer import VisualTokenizer

QWEN_VISUAL_PREFIX = "transformer.visual."
_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_NAMES = ("model.safetensors", "pytorch_model.bin")


def load_visual_tokenizer(
    path: str | Path, cfg: VisionConfig, *, dtype: torch.dtype = torch.float32
) -> tuple[VisualTokenizer, KeyReport]:
    """Build the ViT and load ``qwen_vit_G.pt`` (or a safetensors twin) with no key left unaccounted."""
    vit = VisualTokenizer(cfg).to(dtype)
    report = load_strict(vit, load_state_dict_file(path), what=f"visual tokenizer {path}")
    return vit.eval().requires_grad_(False), report


def _qwen_checkpoint_file(qwen_dir: Path) -> Path:
    for name in (*_INDEX_NAMES, *_SINGLE_NAMES):
        if (qwen_dir / name).is_file():
            return qwen_dir / name
    raise FileNotFoundError(
        f"no Qwen-VL checkpoint in {qwen_dir}: expected one of {', '.join(_INDEX_NAMES + _SINGLE_NAMES)}"
    )


def extract_qwen_vit(qwen_dir: str | Path, out: str | Path, cfg: VisionConfig) -> tuple[Path, KeyReport]:
    """Write the ViT of a Qwen-VL(-Chat) folder to ``out`` (``.pt`` as released, or ``.safetensors``).

    The keys are checked against the configured ViT before anything is written, so a wrong source folder
    fails with the list of offending keys instead of producing a file that will not load.
    """
    qwen_dir, out = Path(qwen_dir), Path(out)
    full = load_state_dict_file(_qwen_checkpoint_file(qwen_dir))
    visual: StateDict = {k[len(QWEN_VISUAL_PREFIX) :]: v for k, v in full.items() if k.startswith(QWEN_VISUAL_PREFIX)}
    if not visual:
        raise ValueError(f"{qwen_dir} holds no '{QWEN_VISUAL_PREFIX}*' weights; is it a Qwen-VL checkpoint?")
    with torch.device("meta"):
        expected = VisualTokenizer(cfg).state_dict()
    report = compare_keys(
        {k: tuple(v.shape) for k, v in expected.items()}, {k: tuple(v.shape) for k, v in visual.items()}
    )
    if not report.ok:
        raise ValueError(report.describe(f"ViT weights in {qwen_dir}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tensors = {k: v.contiguous() for k, v in visual.items()}
    if out.suffix == ".safetensors":
        save_file(tensors, str(tmp))
    else:
        torch.save(tensors, tmp)
    tmp.replace(out)  # never leave a half-written file under the final name
    return out, report
