"""Architecture configs for the three SEED-Story networks, as pydantic models.

The sizes themselves are named presets in :mod:`seed_story.presets`: ``from_preset("seed-story-george")`` gives
the released model's shapes, ``from_preset("tiny")`` the same architecture small enough for CPU tests.

Example::

    from seed_story.presets import from_preset
    cfg = from_preset("tiny")
    cfg.mllm.num_image_tokens  # 16
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Base for every config and record: unknown keys are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class VisionConfig(StrictModel):
    """Qwen-VL-style ViT with an attention-pool resampler (the release's ViT config, qwen_vitg_448.yaml)."""

    image_size: int = Field(gt=0)
    patch_size: int = Field(gt=0)
    width: int = Field(gt=0)
    layers: int = Field(gt=0)
    heads: int = Field(gt=0)
    mlp_ratio: float = Field(gt=0)
    output_dim: int = Field(gt=0)
    pos_embed_grid: int = Field(gt=0, description="grid of the stored positional embedding (16 for ViT-G)")
    pool_grid: int = Field(gt=0, description="attention-pool query grid; n_queries = pool_grid**2")
    pool_head_dim: int = Field(default=128, gt=0)
    eps: float = 1e-6

    @model_validator(mode="after")
    def _check(self) -> VisionConfig:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.output_dim % self.pool_head_dim:
            raise ValueError(f"output_dim {self.output_dim} is not divisible by pool_head_dim {self.pool_head_dim}")
        return self

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def mlp_width(self) -> int:
        return int(self.width * self.mlp_ratio)

    @property
    def n_queries(self) -> int:
        return self.pool_grid**2


class ResamplerConfig(StrictModel):
    """One perceiver cross-attention layer from ``kv_dim`` inputs to ``grid**2`` queries (the release's Resampler)."""

    grid: int = Field(gt=0)
    embed_dim: int = Field(gt=0)
    num_heads: int = Field(gt=0)
    kv_dim: int = Field(gt=0)
    eps: float = 1e-5

    @model_validator(mode="after")
    def _check(self) -> ResamplerConfig:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % 4:
            raise ValueError("embed_dim must be a multiple of 4 for the 2-D sin-cos position embedding")
        return self

    @property
    def num_queries(self) -> int:
        return self.grid**2


class LlamaSettings(StrictModel):
    """The Llama-2 base model; field names follow ``transformers.LlamaConfig``."""

    vocab_size: int = Field(gt=0, description="base vocabulary before the image tokens are added")
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0)
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0


class LoraSettings(StrictModel):
    r: int = Field(gt=0)
    alpha: int = Field(gt=0)
    dropout: float = Field(ge=0, lt=1)
    target_modules: tuple[str, ...] = (
        "q_proj",
        "v_proj",
        "k_proj",
        "o_proj",
        "gate_proj",
        "down_proj",
        "up_proj",
    )
    modules_to_save: tuple[str, ...] = ("input_layernorm", "post_attention_layernorm", "norm")

    @property
    def scaling(self) -> float:
        return self.alpha / self.r


# cosine: the reference's; centered_cosine: about the batch's mean picture; cosine_and_centered: their sum.
RecLoss = Literal["cosine", "centered_cosine", "cosine_and_centered"]


class MLLMConfig(StrictModel):
    """Llama + LoRA with input/output resamplers (the release's ContinuousLVLM)."""

    llm: LlamaSettings
    lora: LoraSettings
    input_resampler: ResamplerConfig
    output_resampler: ResamplerConfig
    lm_loss_scale: float = 1.0
    rec_loss_scale: float = 1.0
    rec_loss: RecLoss = Field(
        "cosine",
        description="image regression loss: the reference's cosine, cosine about the batch's mean picture, or both",
    )

    @model_validator(mode="after")
    def _check(self) -> MLLMConfig:
        d = self.llm.hidden_size
        if self.input_resampler.embed_dim != d:
            raise ValueError(f"input_resampler.embed_dim {self.input_resampler.embed_dim} != llm.hidden_size {d}")
        if self.output_resampler.kv_dim != d:
            raise ValueError(f"output_resampler.kv_dim {self.output_resampler.kv_dim} != llm.hidden_size {d}")
        return self

    @property
    def num_image_tokens(self) -> int:
        """Image tokens per picture in the LLM sequence (64 for the real model)."""
        return self.input_resampler.num_queries

    @property
    def vocab_size(self) -> int:
        """Base vocabulary + ``<img>``, ``</img>`` and one token per image position."""
        return self.llm.vocab_size + 2 + self.num_image_tokens


class ResamplerXLConfig(StrictModel):
    """ResamplerXLV2: ViT features -> (prompt_embeds, pooled_prompt_embeds) for SDXL (the release's ResamplerXLV2)."""

    dim: int = Field(gt=0)
    depth: int = Field(gt=0)
    dim_head: int = Field(gt=0)
    heads: int = Field(gt=0)
    num_queries: int = Field(gt=0)
    embedding_dim: int = Field(gt=0)
    output1_dim: int = Field(gt=0)
    output2_dim: int = Field(gt=0)
    ff_mult: int = Field(gt=0)
    pool_heads: int = Field(gt=0)

    @property
    def cross_attention_dim(self) -> int:
        return self.output1_dim + self.output2_dim


class UNetConfig(StrictModel):
    """SDXL-shaped ``diffusers.UNet2DConditionModel`` settings (SDXL-base-1.0's configs)."""

    sample_size: int = 128
    in_channels: int = 4
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
    mid_block_type: str = "UNetMidBlock2DCrossAttn"
    layers_per_block: int = 2
    transformer_layers_per_block: tuple[int, ...] = (1, 2, 10)
    attention_head_dim: tuple[int, ...] = (5, 10, 20)
    cross_attention_dim: int = 2048
    use_linear_projection: bool = True
    addition_embed_type: str = "text_time"
    addition_time_embed_dim: int = 256
    projection_class_embeddings_input_dim: int = 2816
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    act_fn: str = "silu"
    flip_sin_to_cos: bool = True
    freq_shift: int = 0

    def to_diffusers(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items()}


class VAEConfig(StrictModel):
    """``diffusers.AutoencoderKL`` settings (SDXL-base VAE by default)."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4
    latent_channels: int = 4
    layers_per_block: int = 2
    norm_num_groups: int = 32
    sample_size: int = 1024
    scaling_factor: float = 0.13025
    force_upcast: bool = True

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def to_diffusers(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.model_dump().items()}


class SchedulerConfig(StrictModel):
    """``diffusers.EulerDiscreteScheduler`` settings of SDXL-base."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: Literal["scaled_linear", "linear"] = "scaled_linear"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    timestep_spacing: Literal["leading", "trailing", "linspace"] = "leading"
    steps_offset: int = 1
    interpolation_type: str = "linear"
    use_karras_sigmas: bool = False

    def to_diffusers(self) -> dict[str, Any]:
        return self.model_dump()


class DetokenizerConfig(StrictModel):
    resampler: ResamplerXLConfig
    unet: UNetConfig
    vae: VAEConfig
    scheduler: SchedulerConfig
    image_size: int = Field(gt=0, description="output picture side in pixels")

    @model_validator(mode="after")
    def _check(self) -> DetokenizerConfig:
        r, u = self.resampler, self.unet
        if r.cross_attention_dim != u.cross_attention_dim:
            raise ValueError(
                f"resampler output1_dim+output2_dim = {r.cross_attention_dim} != unet.cross_attention_dim "
                f"{u.cross_attention_dim}"
            )
        expected = r.output2_dim + 6 * u.addition_time_embed_dim
        if u.projection_class_embeddings_input_dim != expected:
            raise ValueError(
                f"unet.projection_class_embeddings_input_dim must be output2_dim + 6*addition_time_embed_dim "
                f"= {expected}, got {u.projection_class_embeddings_input_dim}"
            )
        if self.image_size % self.vae.downscale:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of the VAE downscale {self.vae.downscale}"
            )
        return self


class ModelConfig(StrictModel):
    """The whole SEED-Story model: visual tokenizer, MLLM and de-tokenizer."""

    name: str
    vision: VisionConfig
    mllm: MLLMConfig
    detokenizer: DetokenizerConfig

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        v, m, d = self.vision, self.mllm, self.detokenizer
        if m.input_resampler.kv_dim != v.output_dim:
            raise ValueError(f"input_resampler.kv_dim {m.input_resampler.kv_dim} != vision.output_dim {v.output_dim}")
        if m.output_resampler.embed_dim != v.output_dim:
            raise ValueError(
                f"output_resampler.embed_dim {m.output_resampler.embed_dim} != vision.output_dim {v.output_dim}"
            )
        if m.output_resampler.num_queries != v.n_queries:
            raise ValueError(
                f"output_resampler must regress {v.n_queries} ViT tokens, has {m.output_resampler.num_queries} queries"
            )
        if d.resampler.embedding_dim != v.output_dim:
            raise ValueError(
                f"detokenizer.resampler.embedding_dim {d.resampler.embedding_dim} != vision.output_dim {v.output_dim}"
            )
        return self
