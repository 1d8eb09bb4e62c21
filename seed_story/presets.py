"""Named architecture presets. Real sizes are the released SEED-Story model's (its configs and checkpoints)."""

from __future__ import annotations

from collections.abc import Callable

from seed_story.config import (
    DetokenizerConfig,
    LlamaSettings,
    LoraSettings,
    MLLMConfig,
    ModelConfig,
    ResamplerConfig,
    ResamplerXLConfig,
    SchedulerConfig,
    UNetConfig,
    VAEConfig,
    VisionConfig,
)


def seed_story_george() -> ModelConfig:
    """SEED-Story-George: Qwen-VL ViT-G/14 at 448 px, Llama-2-7B + LoRA r16, SDXL-base de-tokenizer."""
    vit_dim, llm_dim = 4096, 4096
    return ModelConfig(
        name="seed-story-george",
        vision=VisionConfig(
            image_size=448,
            patch_size=14,
            width=1664,
            layers=48,
            heads=16,
            mlp_ratio=4.9231,
            output_dim=vit_dim,
            pos_embed_grid=16,
            pool_grid=16,
        ),
        mllm=MLLMConfig(
            llm=LlamaSettings(
                vocab_size=32000,
                hidden_size=llm_dim,
                intermediate_size=11008,
                num_hidden_layers=32,
                num_attention_heads=32,
                num_key_value_heads=32,
                max_position_embeddings=4096,
            ),
            lora=LoraSettings(r=16, alpha=32, dropout=0.05),
            input_resampler=ResamplerConfig(grid=8, embed_dim=llm_dim, num_heads=32, kv_dim=vit_dim),
            output_resampler=ResamplerConfig(grid=16, embed_dim=vit_dim, num_heads=32, kv_dim=llm_dim),
        ),
        detokenizer=DetokenizerConfig(
            resampler=ResamplerXLConfig(
                dim=1024,
                depth=4,
                dim_head=64,
                heads=16,
                num_queries=64,
                embedding_dim=vit_dim,
                output1_dim=768,
                output2_dim=1280,
                ff_mult=4,
                pool_heads=16,
            ),
            unet=UNetConfig(),
            vae=VAEConfig(),
            scheduler=SchedulerConfig(),
            image_size=1024,
        ),
    )


def tiny() -> ModelConfig:
    """Same architecture at toy sizes: builds in milliseconds, runs a whole story on a CPU.

    Every resize the real model does is kept: the ViT's stored position grid (2) is upsampled to its
    patch grid (4), the input resampler's key grid (4) to the ViT's 8x8 tokens and the output
    resampler's (8) down to 4x4 image tokens.
    """
    vit_dim, llm_dim = 64, 64
    return ModelConfig(
        name="tiny",
        vision=VisionConfig(
            image_size=56,
            patch_size=14,
            width=32,
            layers=2,
            heads=4,
            mlp_ratio=2.0,
            output_dim=vit_dim,
            pos_embed_grid=2,
            pool_grid=8,
            pool_head_dim=16,
        ),
        mllm=MLLMConfig(
            llm=LlamaSettings(
                vocab_size=259,  # the byte-level test tokenizer: 3 specials + 256 bytes
                hidden_size=llm_dim,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                max_position_embeddings=8192,
            ),
            lora=LoraSettings(r=4, alpha=8, dropout=0.0),
            input_resampler=ResamplerConfig(grid=4, embed_dim=llm_dim, num_heads=4, kv_dim=vit_dim),
            output_resampler=ResamplerConfig(grid=8, embed_dim=vit_dim, num_heads=4, kv_dim=llm_dim),
        ),
        detokenizer=DetokenizerConfig(
            resampler=ResamplerXLConfig(
                dim=32,
                depth=2,
                dim_head=8,
                heads=4,
                num_queries=16,
                embedding_dim=vit_dim,
                output1_dim=16,
                output2_dim=16,
                ff_mult=2,
                pool_heads=4,
            ),
            unet=UNetConfig(
                sample_size=16,
                block_out_channels=(32, 64),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                layers_per_block=1,
                transformer_layers_per_block=(1, 1),
                attention_head_dim=(2, 4),
                cross_attention_dim=32,
                addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=16 + 6 * 8,
                norm_num_groups=8,
            ),
            vae=VAEConfig(
                block_out_channels=(16, 32),
                down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2,
                layers_per_block=1,
                norm_num_groups=8,
                sample_size=32,
            ),
            scheduler=SchedulerConfig(),
            image_size=32,
        ),
    )


def seed_story_mini(vocab_size: int = 1024) -> ModelConfig:
    """SEED-Story-Mini: the same architecture sized for the synthetic story world and a CPU (64 px pictures).

    A ViT at 64 px with 8 px patches (64 feature tokens of 128 dims), a 4-layer Llama (256 wide) with LoRA,
    16 image tokens in the LLM (the real model's 64 at a quarter), a de-tokenizer resampler with the real
    model's 64 queries (one per ViT token), a latent UNet over a 4x VAE (16x16x4 latents). ``vocab_size`` is
    the BPE tokenizer's base vocabulary, trained on the world's text; the image tokens are added on top, as
    for Llama.
    """
    vit_dim, llm_dim = 128, 256
    return ModelConfig(
        name="seed-story-mini",
        vision=VisionConfig(
            image_size=64,
            patch_size=8,
            width=128,
            layers=4,
            heads=4,
            mlp_ratio=4.0,
            output_dim=vit_dim,
            pos_embed_grid=8,
            pool_grid=8,
            pool_head_dim=32,
        ),
        mllm=MLLMConfig(
            llm=LlamaSettings(
                vocab_size=vocab_size,
                hidden_size=llm_dim,
                intermediate_size=688,
                num_hidden_layers=4,
                num_attention_heads=4,
                num_key_value_heads=4,
                max_position_embeddings=4096,
            ),
            lora=LoraSettings(r=8, alpha=16, dropout=0.05),
            input_resampler=ResamplerConfig(grid=4, embed_dim=llm_dim, num_heads=4, kv_dim=vit_dim),
            output_resampler=ResamplerConfig(grid=8, embed_dim=vit_dim, num_heads=4, kv_dim=llm_dim),
        ),
        detokenizer=DetokenizerConfig(
            resampler=ResamplerXLConfig(
                dim=128,
                depth=2,
                dim_head=32,
                heads=4,
                num_queries=64,
                embedding_dim=vit_dim,
                output1_dim=64,
                output2_dim=64,
                ff_mult=2,
                pool_heads=4,
            ),
            unet=UNetConfig(
                sample_size=16,
                block_out_channels=(64, 128),
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                layers_per_block=1,
                transformer_layers_per_block=(1, 1),
                attention_head_dim=(4, 8),
                cross_attention_dim=128,
                addition_time_embed_dim=8,
                projection_class_embeddings_input_dim=64 + 6 * 8,
                norm_num_groups=16,
            ),
            vae=VAEConfig(
                block_out_channels=(32, 64, 64),
                down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3,
                layers_per_block=1,
                norm_num_groups=16,
                sample_size=64,
                scaling_factor=1.0,
            ),
            scheduler=SchedulerConfig(),
            image_size=64,
        ),
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "seed-story-george": seed_story_george,
    "tiny": tiny,
    "seed-story-mini": seed_story_mini,
}


def from_preset(name: str) -> ModelConfig:
    """The named preset's config; ``ValueError`` lists the known names on a typo.

    Example::

        >>> from_preset("tiny").name
        'tiny'
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]()
