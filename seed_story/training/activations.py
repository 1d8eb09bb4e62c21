"""Activation memory of one training micro-batch, derived from the architecture (``seed-story train plan``).

What is counted is what autograd saves for backward (the tensors ``torch.autograd.graph.saved_tensors_hooks``
sees), layer by layer, each in the dtype it is held in. ``a`` is the bytes of the compute dtype: 2 under
autocast (bf16/fp16), 4 without mixed precision. The rules every formula below follows:

- matmuls and convolutions run in ``a`` and save ``a`` copies of their inputs; LayerNorm, GroupNorm and Llama's
  RMSNorm compute in float32 and return float32, so a linear layer after a norm casts its input anew on every
  call (autocast caches only the casts of weights);
- a linear layer saves its input only when its weight trains, a convolution always; a float32 weight used under
  autocast saves its ``a``-byte cast once per forward (the "weight casts");
- attention is PyTorch's fused SDPA: q, k, v, the output and a float32 log-sum-exp, never the L x L scores; a
  boolean padding mask becomes an L x L bias in ``a`` bytes for every layer that reads it;
- dropout keeps a mask of ``dropout_mask`` bytes per element (1 on CUDA; CPU keeps a float32 noise tensor, 4).

The model is split into units (a Llama decoder layer, a UNet ResNet or transformer block, a resampler, the LM
head and loss). Without checkpointing every unit keeps what it saves; with it a checkpointed unit (what the
trainer's ``gradient_checkpointing`` wraps: each decoder layer, each UNet ResNet and transformer block) keeps only
its inputs. Either way backward needs about one unit's activations more (its recompute, or the gradients flowing
through it): the ``working`` term is the largest unit's saved bytes.

Per Llama decoder layer and token (d hidden, f MLP width, L sequence length, H heads, r LoRA rank)::

    2 RMSNorms x (2 d x 4 + 4)                 the input and the normalised input in float32, 1/rms
    + inputs of the trained linears            q,k,v and gate,up read a float32 norm output: one a-copy per
                                               trained path under autocast (one shared 4-byte tensor without);
                                               o reads the attention output (d x a), down the gated product (f x a)
    + 4 d x a + 4 H + L x a                    SDPA's q, k, v, output, log-sum-exp; the padding-mask bias
    + 3 f x a                                  SiLU's input, the product's two factors
    + r x a per LoRA path, input x m per dropout mask (LoRA dropout > 0)
    + the layer's weight casts / tokens

Per UNet ResNet (c_in -> c_out channels) and pixel: (2a + 4) x (c_in + c_out) -- GroupNorm input, SiLU input
(float32), convolution input, for each half. Per BasicTransformerBlock (c channels): 3 LayerNorm inputs (3c x a),
self-attention's trained k/v inputs (2c x a), SDPA (4c x a), cross-attention's query and output (2c x a), GEGLU
(12c x a); a fully trained UNet adds the inputs of to_q, to_out and both feed-forward linears. Down/up-sampler
convolutions save their input.

Frozen networks run under ``no_grad`` first: they save nothing but need a working set while they run (the
``frozen_forward`` term: the largest layer's intermediates for all of the batch's pictures or tokens), and their
outputs (``kept``: ViT features, latents) stay alive for the whole step.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import UNet2DConditionModel
from peft.tuners.lora import LoraLayer
from torch import nn

from seed_story.config import MLLMConfig, ModelConfig, ResamplerConfig, ResamplerXLConfig
from seed_story.models.detokenizer import ResamplerXLV2
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.models.resampler import Resampler

FLOAT32 = 4


@dataclass(frozen=True)
class Precision:
    """How activations are held: ``compute`` bytes (2 under autocast, 4 without) and dropout masks' bytes."""

    compute: int
    dropout_mask: int = 1

    @property
    def autocast(self) -> bool:
        return self.compute < FLOAT32


@dataclass(frozen=True)
class Unit:
    """A piece of the trained graph: what it saves (``casts`` of them are weight casts), ``count`` times."""

    name: str
    saved: int
    casts: int = 0
    count: int = 1
    checkpointed: int | None = None  # what it keeps when checkpointed (its inputs); None: never checkpointed


@dataclass(frozen=True)
class StageActivations:
    """A stage's units plus the frozen networks' no-grad working set and the outputs kept through the step."""

    units: list[Unit]
    frozen_forward: int
    kept: int

    def saved(self, checkpointing: bool, with_casts: bool = True) -> int:
        total = 0
        for u in self.units:
            if checkpointing and u.checkpointed is not None:
                total += u.count * u.checkpointed
            else:
                total += u.count * (u.saved if with_casts else u.saved - u.casts)
        return total

    def working(self, with_casts: bool = True) -> int:
        return max((u.saved if with_casts else u.saved - u.casts) for u in self.units)


def weight_casts(module: nn.Module, p: Precision) -> int:
    """Bytes of the ``a``-byte copies autocast makes of ``module``'s float32 matmul/convolution weights."""
    if not p.autocast:
        return 0
    total = 0
    for m in module.modules():
        weights = []
        if isinstance(m, nn.Linear | nn.Conv2d):
            weights.append(m.weight)
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            weights.append(m.in_proj_weight)
        total += sum(w.numel() * p.compute for w in weights if w.element_size() > p.compute)
    return total


# --- the MLLM (stage 2) -------------------------------------------------------------------------------------


def _linear_inputs(layer: nn.Module, p: Precision) -> int:
    """Per token: the inputs a decoder layer's trained linears save, and their LoRA intermediates and masks."""
    # Which tensor each projection reads, and whether that tensor is a float32 norm output.
    sources = {"q_proj": "norm1", "k_proj": "norm1", "v_proj": "norm1", "o_proj": "attn", "gate_proj": "norm2",
               "up_proj": "norm2", "down_proj": "product"}  # fmt: skip
    float32_source = {"norm1", "norm2"}
    shared: dict[str, int] = {}
    total = 0
    for name, m in layer.named_modules():
        short = name.rsplit(".", 1)[-1]
        if short not in sources or not isinstance(m, nn.Linear | LoraLayer):
            continue
        source = sources[short]
        width = m.in_features
        cast = p.autocast and source in float32_source  # autocast casts a float32 input on every call
        paths = []
        base = m.get_base_layer() if isinstance(m, LoraLayer) else m
        if base.weight.requires_grad:
            paths.append(False)
        if isinstance(m, LoraLayer):
            for adapter in m.active_adapters:
                dropout = not isinstance(m.lora_dropout[adapter], nn.Identity)
                paths.append(dropout)
                total += m.r[adapter] * p.compute + (width * p.dropout_mask if dropout else 0)
        for dropout in paths:
            if dropout or cast:  # a new tensor per path: the dropout output, or autocast's cast
                total += width * p.compute
            else:
                shared[source] = width * (FLOAT32 if source in float32_source else p.compute)
    return total + sum(shared.values())


def llama_layer_unit(mllm: SeedStoryMLLM, p: Precision, batch: int, seq: int) -> Unit:
    """One decoder layer (see the module docstring's formula); checkpointed, it keeps its input hidden states."""
    s = mllm.cfg.llm
    d, f = s.hidden_size, s.intermediate_size
    layer = mllm.language_model.layers[0]
    tokens = batch * seq
    residual = mllm.language_model.embed_tokens.weight.element_size()  # the stream's dtype: the embeddings'
    per_token = 2 * (2 * d * FLOAT32 + FLOAT32)  # two RMSNorms
    per_token += 4 * d * p.compute + s.num_attention_heads * FLOAT32 + seq * p.compute  # SDPA and the mask bias
    per_token += 3 * f * p.compute  # SiLU's input, the gated product's two factors
    per_token += _linear_inputs(layer, p)
    casts = weight_casts(layer, p)
    return Unit("decoder layer", tokens * per_token + casts, casts, count=s.num_hidden_layers,
                checkpointed=tokens * d * residual)  # fmt: skip


def perceiver_unit(name: str, resampler: Resampler, p: Precision, images: int, kv_tokens: int, in_bytes: int) -> Unit:
    """A perceiver resampler (one cross-attention) over ``images`` inputs of ``kv_tokens`` tokens each.

    Per key token: the LayerNorm's input, the k and v projections' inputs and SDPA's k and v; per query: the
    q projection's input, q, the output and the out-projection's input.
    """
    cfg: ResamplerConfig = resampler.cfg
    d, q = cfg.embed_dim, cfg.num_queries
    per_image = kv_tokens * d * (4 * p.compute)
    if isinstance(resampler.kv_proj, nn.Linear):
        per_image += kv_tokens * d * p.compute  # the LayerNorm's input is kv_proj's output
        if resampler.kv_proj.weight.requires_grad:
            per_image += kv_tokens * cfg.kv_dim * (p.compute if p.autocast else in_bytes)
    else:
        per_image += kv_tokens * cfg.kv_dim * in_bytes
    per_image += q * d * p.compute * (4 if p.autocast else 3)
    casts = weight_casts(resampler, p)
    return Unit(name, images * per_image + casts, casts)


def lm_head_unit(mllm: SeedStoryMLLM, p: Precision, batch: int, seq: int) -> Unit:
    """The final RMSNorm, ``lm_head`` (its input, its weight cast) and the cross-entropy's float32 log-softmax."""
    d, vocab = mllm.cfg.llm.hidden_size, mllm.cfg.vocab_size
    tokens = batch * seq
    casts = weight_casts(mllm.lm_head, p)
    saved = tokens * (2 * d * FLOAT32 + FLOAT32 + d * p.compute) + batch * (seq - 1) * vocab * FLOAT32
    return Unit("final norm, lm_head, loss", saved + casts, casts)


def stage2_units(mllm: SeedStoryMLLM, cfg: ModelConfig, p: Precision, batch: int, seq: int, images: int) -> list[Unit]:
    """Stage 2: the input resampler over every context picture, the decoder layers, the head, the regression."""
    m: MLLMConfig = cfg.mllm
    vit_tokens, context = cfg.vision.n_queries, max(images - 1, 1)
    out_cfg = m.output_resampler
    cosine = 2 * batch * out_cfg.num_queries * out_cfg.embed_dim * FLOAT32  # the prediction and the target, float32
    regression = perceiver_unit("output resampler", mllm.output_resampler, p, batch, m.num_image_tokens, FLOAT32)
    return [
        perceiver_unit("input resampler", mllm.input_resampler, p, batch * context, vit_tokens, FLOAT32),
        llama_layer_unit(mllm, p, batch, seq),
        Unit("attention mask", 0, checkpointed=batch * seq * seq),  # the boolean mask every checkpoint keeps
        lm_head_unit(mllm, p, batch, seq),
        Unit("output resampler, cosine loss", regression.saved + cosine, regression.casts),
    ]


# --- the de-tokenizer (stages 1 and 3) ----------------------------------------------------------------------


def _resnet(block: nn.Module, p: Precision, pixels: int, first_half: bool) -> Unit:
    half = 2 * p.compute + FLOAT32  # GroupNorm input, SiLU input (float32), convolution input
    c_in, c_out = block.in_channels, block.out_channels
    saved = pixels * half * ((c_in if first_half else 0) + c_out)
    casts = weight_casts(block, p) - (0 if first_half else weight_casts(block.conv1, p))
    return Unit("UNet ResNet", saved + casts, casts, checkpointed=pixels * c_in * p.compute)


def _transformer_block(block: nn.Module, p: Precision, pixels: int, context_tokens: int) -> Unit:
    c, a = block.attn1.to_q.in_features, p.compute
    trained = {name: m.weight.requires_grad for name, m in block.named_modules() if isinstance(m, nn.Linear)}
    per_pixel = 3 * c * a + 4 * c * a + 2 * c * a + 12 * c * a  # LayerNorms, self-attention SDPA, cross q/out, GEGLU
    self_inputs = sum(trained[f"attn1.to_{x}"] for x in "qkv")
    per_pixel += self_inputs * c * a if p.autocast else min(self_inputs, 1) * c * FLOAT32
    per_pixel += c * a * (trained["attn1.to_out.0"] + trained["attn2.to_out.0"] + 4 * trained["ff.net.2"])
    per_pixel += c * (a if p.autocast else FLOAT32) * (trained["attn2.to_q"] + trained["ff.net.0.proj"])
    casts = weight_casts(block, p)
    saved = pixels * per_pixel + 2 * context_tokens * c * a + casts  # cross-attention's k and v
    return Unit("UNet transformer block", saved, casts, checkpointed=pixels * c * a)


def _transformer_shell(model: nn.Module, p: Precision, pixels: int) -> Unit:
    c = model.in_channels
    trained = int(model.proj_in.weight.requires_grad) + int(model.proj_out.weight.requires_grad)
    casts = weight_casts(model.proj_in, p) + weight_casts(model.proj_out, p)
    return Unit("UNet transformer in/out", pixels * c * p.compute * (1 + trained) + casts, casts)


def _conv(name: str, conv: nn.Conv2d, p: Precision, pixels: int) -> Unit:
    casts = weight_casts(conv, p)
    return Unit(name, pixels * conv.in_channels * p.compute + casts, casts)


def _attention_units(model: nn.Module, p: Precision, pixels: int, context_tokens: int) -> list[Unit]:
    """A ``Transformer2DModel``: its GroupNorm and projections, then each of its transformer blocks."""
    blocks = [_transformer_block(b, p, pixels, context_tokens) for b in model.transformer_blocks]
    return [_transformer_shell(model, p, pixels), *blocks]


def unet_units(unet: UNet2DConditionModel, p: Precision, batch: int, latent: int, context_tokens: int) -> list[Unit]:
    """Walk the UNet's blocks in forward order, tracking the latent side length through the samplers."""
    units: list[Unit] = []
    side = latent
    first_half = unet.conv_in.weight.requires_grad  # else the first ResNet's first half sees no trained input

    def pairs(resnets: list[nn.Module], attentions: list[nn.Module]) -> None:
        nonlocal first_half
        for i, resnet in enumerate(resnets):
            units.append(_resnet(resnet, p, batch * side * side, first_half))
            first_half = True
            if i < len(attentions):
                units.extend(_attention_units(attentions[i], p, batch * side * side, batch * context_tokens))

    for block in unet.down_blocks:
        pairs(list(block.resnets), list(getattr(block, "attentions", None) or []))
        for down in block.downsamplers or []:
            units.append(_conv("UNet downsampler", down.conv, p, batch * side * side))
            side //= 2
    # The mid block runs ResNet, attention, ResNet, ...: one ResNet more than attentions.
    mid = unet.mid_block
    units.append(_resnet(mid.resnets[0], p, batch * side * side, True))
    for attn, resnet in zip(mid.attentions, mid.resnets[1:], strict=True):
        units.extend(_attention_units(attn, p, batch * side * side, batch * context_tokens))
        units.append(_resnet(resnet, p, batch * side * side, True))
    for block in unet.up_blocks:
        pairs(list(block.resnets), list(getattr(block, "attentions", None) or []))
        for up in block.upsamplers or []:
            side *= 2
            units.append(_conv("UNet upsampler", up.conv, p, batch * side * side))
    c0 = unet.conv_norm_out.num_channels
    out = _conv("UNet output", unet.conv_out, p, batch * side * side)
    units.append(Unit(out.name, out.saved + batch * side * side * c0 * (p.compute + FLOAT32), out.casts))
    return units


def resampler_xl_unit(resampler: ResamplerXLV2, p: Precision, images: int, tokens: int) -> Unit:
    """ResamplerXLV2: normalise and project the ViT tokens, ``depth`` perceiver layers, the two SDXL outputs."""
    cfg: ResamplerXLConfig = resampler.cfg
    a, q, dim, e = p.compute, cfg.num_queries, cfg.dim, cfg.embedding_dim
    inner, kv = cfg.heads * cfg.dim_head, tokens + cfg.num_queries
    per_image = tokens * e * (FLOAT32 + a) + tokens * dim * a  # F.normalize's input, proj_in's input, the keys' x
    per_layer = q * dim * (FLOAT32 + a) + kv * dim * a  # the latents' norm and to_q inputs, to_kv's input
    per_layer += q * inner * a + kv * inner * a + 2 * kv * inner * a  # scaled q and k, the k/v projection
    per_layer += cfg.heads * q * kv * (FLOAT32 + (a if p.autocast else 0))  # softmax in float32, cast back
    per_layer += q * inner * a  # to_out's input
    per_layer += q * dim * (FLOAT32 + a) + 2 * q * dim * cfg.ff_mult * a  # the feed-forward
    per_image += cfg.depth * per_layer
    per_image += q * dim * (FLOAT32 + 2 * a) + 5 * (q + 1) * dim * a  # norm_out, the two projections, the pool
    per_image += q * cfg.cross_attention_dim * a  # prompt_embeds, which every cross-attention's k/v saves
    casts = weight_casts(resampler, p)
    return Unit("de-tokenizer resampler", images * per_image + casts, casts)


def denoising_units(
    detokenizer: nn.Module, cfg: ModelConfig, p: Precision, batch: int, sd_size: int
) -> tuple[list[Unit], int]:
    """Stages 1/3's trained graph (resampler, UNet, MSE) and the latent side length."""
    latent = sd_size // cfg.detokenizer.vae.downscale
    q = cfg.detokenizer.resampler.num_queries
    mse = 2 * batch * cfg.detokenizer.unet.out_channels * latent * latent * FLOAT32
    units = [resampler_xl_unit(detokenizer.resampler, p, batch, cfg.vision.n_queries)]
    units += unet_units(detokenizer.unet, p, batch, latent, q)
    units.append(Unit("MSE loss", mse))
    return units, latent


# --- frozen networks (no grad) ---------------------------------------------------------------------------------


def vit_forward(cfg: ModelConfig, p: Precision, images: int, image_size: int) -> int:
    """The ViT's largest block's working set: input, LayerNorm output, q/k/v, attention output, MLP hidden x 2."""
    v = cfg.vision
    tokens = images * (image_size // v.patch_size) ** 2
    return tokens * (v.width * (5 * p.compute + FLOAT32) + 2 * v.mlp_width * p.compute)


def vae_encode(cfg: ModelConfig, p: Precision, images: int, sd_size: int) -> int:
    """The VAE encoder at full resolution: input, GroupNorm and SiLU outputs (float32), convolution output."""
    channels = cfg.detokenizer.vae.block_out_channels[0]
    return images * sd_size * sd_size * channels * (2 * p.compute + 2 * FLOAT32)


def mllm_forward(cfg: ModelConfig, p: Precision, batch: int, seq: int) -> int:
    """A frozen teacher-forced MLLM: the larger of one decoder layer's intermediates and the LM head's logits."""
    s = cfg.mllm.llm
    tokens = batch * seq
    layer = tokens * (s.hidden_size * (5 * p.compute + 2 * FLOAT32) + 3 * s.intermediate_size * p.compute)
    head = tokens * cfg.mllm.vocab_size * (p.compute + 2 * FLOAT32)  # logits, their float32 copy, log-softmax
    return max(layer, head)
