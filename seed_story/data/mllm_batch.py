"""The MLLM's training batch: the tensors ``SeedStoryMLLM.forward`` reads, in the reference layout."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch


@dataclass
class MLLMBatch:
    """A right-padded batch (the release's ContinuousLVLM.forward); ``as_kwargs()`` feeds ``SeedStoryMLLM``.

    (B, L) ``input_ids``, ``attention_mask``, ``labels`` (int64) and ``ids_cmp_mask``/``ids_gen_mask`` (bool);
    (N,) ``embeds_cmp_mask``/``embeds_gen_mask`` (bool) and (N, T, D) ``image_embeds`` over all N pictures.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    ids_cmp_mask: torch.Tensor
    ids_gen_mask: torch.Tensor
    embeds_cmp_mask: torch.Tensor
    embeds_gen_mask: torch.Tensor
    image_embeds: torch.Tensor

    def as_kwargs(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)

    @classmethod
    def from_fields(cls, source: Any, image_embeds: torch.Tensor | None = None) -> MLLMBatch:
        """Pick this batch's fields off any object that carries them (e.g. a pixel batch), with ``image_embeds``
        given or read from ``source``."""
        values = {f.name: getattr(source, f.name, None) for f in fields(cls)}
        if image_embeds is not None:
            values["image_embeds"] = image_embeds
        return cls(**values)
