"""The SEED-Story MLLM: Llama-2 + LoRA between an input and an output resampler (the release's ContinuousLVLM).

Images enter the LLM as ``num_image_tokens`` embeddings produced by the input resampler from ViT features,
written over the ``<img_xxxxx>`` token positions of *context* images. For the *target* image the model
sees the learned embeddings of the image tokens, and the post-norm hidden states at those positions go
through the output resampler to regress the target's ViT features (cosine loss).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaModel

from seed_story.config import LoraSettings, MLLMConfig
from seed_story.models.resampler import Resampler


def llama_config(cfg: MLLMConfig) -> LlamaConfig:
    """The transformers config of the LLM, with the vocabulary already grown by the image tokens."""
    s = cfg.llm
    return LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=s.hidden_size,
        intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads,
        num_key_value_heads=s.num_key_value_heads,
        max_position_embeddings=s.max_position_embeddings,
        rms_norm_eps=s.rms_norm_eps,
        rope_theta=s.rope_theta,
        bos_token_id=s.bos_token_id,
        eos_token_id=s.eos_token_id,
        pad_token_id=s.pad_token_id,
        tie_word_embeddings=False,
        hidden_act="silu",
    )


def add_lora(llm: LlamaForCausalLM, lora: LoraSettings) -> PeftModel:
    """Wrap ``llm`` with LoRA as the release did; embeddings and lm_head stay fully trainable."""
    peft_cfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        modules_to_save=list(lora.modules_to_save),
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft calls a transformers API that 5.x deprecated; nothing for our users to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(llm, peft_cfg)
    # Trained in full but not in modules_to_save, so they keep their plain key names (the release's llama2chat7b_lora
    # config).
    model.get_input_embeddings().weight.requires_grad_(True)
    model.get_output_embeddings().weight.requires_grad_(True)
    return model


def build_llm(cfg: MLLMConfig, *, lora: bool = True) -> LlamaForCausalLM | PeftModel:
    """A randomly initialised LLM of the configured size (use under ``torch.device('meta')`` to size it)."""
    llm = LlamaForCausalLM(llama_config(cfg))
    return add_lora(llm, cfg.lora) if lora else llm


@dataclass
class MLLMOutput:
    loss: torch.Tensor
    lm_loss: torch.Tensor
    rec_loss: torch.Tensor
    logits: torch.Tensor | None = None
    recon_image_embeds: torch.Tensor | None = None


def cosine_regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over all tokens of 1 - cos(pred, target) along the feature axis."""
    return (1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1)).mean()


def centered_cosine_regression_loss(pred: torch.Tensor, target: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """Mean over all tokens of 1 - cos(p - centre, t - centre), p and t the L2-normalised tokens.

    ``centre`` (T, D) is a mean of normalised tokens (per position). Its minimum is still p = t, but what every
    picture shares no longer counts: in the mini world two frames that differ only in who stands in a slot have
    a mean token cosine of 0.98, so the plain loss rewards the background and barely the characters.
    """
    p = F.normalize(pred.float(), dim=-1) - centre
    t = F.normalize(target.float(), dim=-1) - centre
    return (1.0 - F.cosine_similarity(p, t, dim=-1)).mean()


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, mean over every label that is not -100 in the whole batch."""
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shift_labels = labels[:, 1:].reshape(-1)
    if not (shift_labels != -100).any():
        return shift_logits.sum() * 0.0
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=-100)


class SeedStoryMLLM(nn.Module):
    """LLM (plain or LoRA-wrapped Llama) + input/output resamplers.

    Key names match the released agent checkpoint: ``llm.base_model.model...`` (peft),
    ``input_resampler.*``, ``output_resampler.*``.

    Example::

        mllm = SeedStoryMLLM(cfg.mllm)
        out = mllm(input_ids, attention_mask, labels, image_embeds,
                   ids_cmp_mask, ids_gen_mask, embeds_cmp_mask, embeds_gen_mask)
        out.loss.backward()
    """

    def __init__(
        self,
        cfg: MLLMConfig,
        llm: LlamaForCausalLM | PeftModel | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.llm = llm if llm is not None else build_llm(cfg)
        self.input_resampler = Resampler(cfg.input_resampler)
        self.output_resampler = Resampler(cfg.output_resampler)

    # -- the pieces of the LLM that generation and training reach into -------------------------------
    @property
    def causal_lm(self) -> LlamaForCausalLM:
        """The ``LlamaForCausalLM`` inside the (optional) peft wrapper; LoRA layers are injected in place."""
        return self.llm.get_base_model() if isinstance(self.llm, PeftModel) else self.llm

    @property
    def language_model(self) -> LlamaModel:
        """The decoder stack whose ``last_hidden_state`` is post-final-norm (what both heads read)."""
        return self.causal_lm.model

    @property
    def lm_head(self) -> nn.Linear:
        return self.causal_lm.lm_head

    @property
    def num_image_tokens(self) -> int:
        return self.cfg.num_image_tokens

    # -- embedding interleaved sequences --------------------------------------------------------------
    def embed_images(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """ViT-space features (N, T_vit, D_vit) -> LLM image embeddings (N, num_image_tokens, D)."""
        return self.input_resampler(image_embeds)

    def embed_inputs(
        self,
        input_ids: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        ids_cmp_mask: torch.Tensor | None = None,
        embeds_cmp_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with the context images' resampled features written over their image tokens.

        ``image_embeds`` (N, T_vit, D_vit) are ViT features or features the model itself regressed;
        ``embeds_cmp_mask`` (N,) picks the context ones, whose ``num_image_tokens`` rows each replace the
        ``ids_cmp_mask`` positions in row-major (sample, then position) order.
        """
        embeds = self.language_model.embed_tokens(input_ids)
        if image_embeds is None or ids_cmp_mask is None or not ids_cmp_mask.any():
            if image_embeds is not None and self.training:
                # Keep the resampler in the graph so data-parallel gradient sync sees every parameter.
                embeds = embeds + 0.0 * self.embed_images(image_embeds[:1]).sum()
            return embeds
        if embeds_cmp_mask is None:
            embeds_cmp_mask = torch.ones(image_embeds.shape[0], dtype=torch.bool, device=image_embeds.device)
        image_lm = self.embed_images(image_embeds[embeds_cmp_mask]).to(embeds.dtype)
        n_slots = int(ids_cmp_mask.sum())
        if n_slots != image_lm.shape[0] * image_lm.shape[1]:
            raise ValueError(
                f"ids_cmp_mask marks {n_slots} positions but {image_lm.shape[0]} context image(s) give "
                f"{image_lm.shape[0] * image_lm.shape[1]} embeddings"
            )
        return embeds.masked_scatter(ids_cmp_mask.unsqueeze(-1), image_lm.reshape(-1, image_lm.shape[-1]))

    def regress_image_features(self, hidden: torch.Tensor) -> torch.Tensor:
        """Post-norm hidden states at one image's token positions (N, num_image_tokens, D) -> ViT space."""
        return self.output_resampler(hidden)

    # -- training forward -----------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        ids_cmp_mask: torch.Tensor | None = None,
        ids_gen_mask: torch.Tensor | None = None,
        embeds_cmp_mask: torch.Tensor | None = None,
        embeds_gen_mask: torch.Tensor | None = None,
        *,
        return_logits: bool = False,
        return_recon_image_embeds: bool = False,
    ) -> MLLMOutput:
        """Teacher-forced forward with the four masks of the reference (the release's ContinuousLVLM.forward).

        ``ids_*_mask`` (B, L) mark image-token positions of context / target images;
        ``embeds_*_mask`` (N,) mark which flattened images are context / target.
        """
        embeds = self.embed_inputs(input_ids, image_embeds, ids_cmp_mask, embeds_cmp_mask)
        hidden = self.language_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
        logits = self.lm_head(hidden)
        lm_loss = causal_lm_loss(logits, labels)

        recon = None
        has_target = (
            image_embeds is not None
            and ids_gen_mask is not None
            and embeds_gen_mask is not None
            and bool(embeds_gen_mask.any())
        )
        if has_target:
            target = image_embeds[embeds_gen_mask]
            n_slots = int(ids_gen_mask.sum())
            if n_slots != target.shape[0] * self.num_image_tokens:
                raise ValueError(
                    f"ids_gen_mask marks {n_slots} positions for {target.shape[0]} target image(s) of "
                    f"{self.num_image_tokens} tokens"
                )
            h = hidden[ids_gen_mask].reshape(target.shape[0], self.num_image_tokens, hidden.shape[-1])
            recon = self.regress_image_features(h)
            rec_loss = recon.new_zeros((), dtype=torch.float32)
            if self.cfg.rec_loss != "centered_cosine":
                rec_loss = rec_loss + cosine_regression_loss(recon, target)
            if self.cfg.rec_loss != "cosine":
                # The centre is the batch's own mean picture (context and targets), a constant to the gradient.
                centre = F.normalize(image_embeds.float(), dim=-1).mean(0).detach()
                rec_loss = rec_loss + centered_cosine_regression_loss(recon, target, centre)
        else:
            # A zero that still touches the output resampler, for the same reason as in embed_inputs.
            rec_loss = 0.0 * self.output_resampler.query.sum()

        loss = self.cfg.lm_loss_scale * lm_loss + self.cfg.rec_loss_scale * rec_loss
        return MLLMOutput(
            loss=loss,
            lm_loss=lm_loss,
            rec_loss=rec_loss,
            logits=logits if return_logits else None,
            recon_image_embeds=recon if return_recon_image_embeds else None,
        )
