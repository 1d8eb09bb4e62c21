"""Choosing the next token: the reference's image-token rule, then greedy or temperature/top-p sampling."""

from __future__ import annotations

import torch

from seed_story.generation.settings import SamplingSettings
from seed_story.tokenizer import ImageTokenIds


def suppress_image_tokens(scores: torch.Tensor, image_ids: ImageTokenIds) -> torch.Tensor:
    """Outside a picture, set the image tokens' and ``</img>``'s scores to 0.0 (the release's generate).

    A soft suppression, faithfully *not* -inf: a token whose score is 0.0 can still win when every other
    score is negative. ``<img>`` is never touched: the model decides when to draw.
    """
    scores = scores.clone()
    scores[:, [*image_ids.image, image_ids.eoi]] = 0.0
    return scores


def forced_continuation(token: int, image_ids: ImageTokenIds) -> list[int]:
    """Tokens the reference forces after ``token`` (empty unless it is ``<img>`` or an image token).

    The rule forces the next of ``<img>, <img_00000> .. <img_{n-1}>, </img>`` whenever the last token is one
    of the first n + 1, so the whole rest of the picture is known the moment one of them is chosen.
    """
    sequence = image_ids.sequence
    if token not in sequence[:-1]:
        return []
    return list(sequence[sequence.index(token) + 1 :])


def choose_tokens(
    logits: torch.Tensor,
    image_ids: ImageTokenIds,
    sampling: SamplingSettings,
    generators: list[torch.Generator | None],
) -> list[int]:
    """One next token per row of ``logits`` (B, V)."""
    scores = suppress_image_tokens(logits.float(), image_ids)
    if not sampling.do_sample:
        return scores.argmax(dim=-1).tolist()
    probs = _top_p(torch.softmax(scores / sampling.temperature, dim=-1), sampling.top_p)
    return [int(torch.multinomial(p, 1, generator=g)) for p, g in zip(probs, generators, strict=True)]


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches ``top_p`` (at least one), renormalised."""
    if top_p >= 1.0:
        return probs
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    before = sorted_probs.cumsum(dim=-1) - sorted_probs
    sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return kept / kept.sum(dim=-1, keepdim=True)
