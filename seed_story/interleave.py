"""Interleaved text + image token sequences: building the ids and locating the image-token slots.

A picture appears in the token stream as ``<img>`` + ``num_image_tokens`` image tokens + ``</img>``. The
positions strictly between ``<img>`` and ``</img>`` are where the MLLM writes resampled image features
(context images) or reads hidden states to regress features (the generated image).
"""

from __future__ import annotations

import torch
from transformers import PreTrainedTokenizerBase

from seed_story.tokenizer import ImageTokenIds


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase,
    text: str,
    *,
    add_bos: bool = True,
) -> list[int]:
    """Tokenise a prompt that may embed image placeholders, as the reference does.

    The whole string is encoded in one call with ``add_special_tokens=False`` and BOS is prepended by hand
    (as the release tokenises): tokenising text and placeholders separately can give different ids around the added
    tokens.
    """
    ids = tokenizer.encode(text, add_special_tokens=False)
    return [tokenizer.bos_token_id, *ids] if add_bos else ids


def image_slot_mask(input_ids: torch.Tensor, image_ids: ImageTokenIds) -> torch.Tensor:
    """Bool mask of the positions strictly between each ``<img>`` and its ``</img>``.

    Works on (L,) or (B, L) ids. Raises ``ValueError`` on unbalanced markers or a picture whose slot count
    differs from the tokenizer's number of image tokens, since either would misplace every later image.
    """
    ids = input_ids if input_ids.dim() == 2 else input_ids.unsqueeze(0)
    is_boi = ids == image_ids.boi
    is_eoi = ids == image_ids.eoi
    # Depth of nesting after each position; inside a picture it is 1 strictly between the markers.
    depth = is_boi.long().cumsum(-1) - is_eoi.long().cumsum(-1)
    if (depth < 0).any() or (depth > 1).any():
        raise ValueError("unbalanced <img>/</img> markers in the token sequence")
    mask = (depth == 1) & ~is_boi
    counts = is_boi.sum(-1)
    if not torch.equal(counts, is_eoi.sum(-1)):
        raise ValueError("a picture is opened with <img> but never closed with </img>")
    n = len(image_ids.image)
    if not torch.equal(mask.sum(-1), counts * n):
        raise ValueError(f"every picture must hold exactly {n} image tokens")
    return mask if input_ids.dim() == 2 else mask[0]
