"""Real-size profile: how close one story gets to the hardware limit (random weights, no download).

Builds a preset (default ``seed-story-george``) on the ``meta`` device, materialises it on the target device
with random weights, and measures: ViT encode per image; MLLM prefill and decode tokens/s (engine KV cache)
at batch 1/4/16; de-tokenizer UNet step and full-picture time at batch 1/4 (CFG); a whole story with a fixed
number of generated tokens per step for this engine and for the reference algorithm (re-encode the window
every step); peak memory; and the low-VRAM plan (halves run one after the other under a 24 GB cap).

Each figure is also given as a fraction of its physical limit: decode against memory bandwidth (weights +
KV read once per token), UNet against peak dense bf16 FLOP/s.

    python bench/gpu_profile.py                         # on a CUDA machine, bf16
    python bench/gpu_profile.py --preset tiny --device cpu --dtype fp32   # seconds, keeps it from rotting
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import DynamicCache  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

from seed_story.components import Components  # noqa: E402
from seed_story.config import ModelConfig  # noqa: E402
from seed_story.generation.decoder import merge_lora_for_inference  # noqa: E402
from seed_story.generation.pipeline import StoryPipeline  # noqa: E402
from seed_story.generation.records import StoryRequest  # noqa: E402
from seed_story.generation.settings import DrawSettings, WriterSettings  # noqa: E402
from seed_story.generation.writer import StoryWriter  # noqa: E402
from seed_story.interleave import image_slot_mask  # noqa: E402
from seed_story.models.detokenizer import build_detokenizer, build_vae  # noqa: E402
from seed_story.models.mllm import SeedStoryMLLM  # noqa: E402
from seed_story.models.resampler import Resampler  # noqa: E402
from seed_story.models.schedulers import build_scheduler  # noqa: E402
from seed_story.models.visual_tokenizer import VisualTokenizer  # noqa: E402
from seed_story.presets import from_preset  # noqa: E402
from seed_story.tokenizer import ImageTokenIds, build_byte_tokenizer, image_string  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Dense peak FLOP/s and memory bandwidth by device name (bf16/fp16 tensor cores, no sparsity).
HARDWARE = {"H100": (989e12, 3.35e12), "H200": (989e12, 4.8e12), "A100": (312e12, 2.0e12)}
UNET_TFLOP_PER_IMAGE_1024 = 6.8  # one SDXL-base UNet pass on one 1024x1024 latent (issue figure)


def materialise(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> Components:
    """Random weights at full size without ever building them on the CPU: meta -> empty -> init."""
    with torch.device("meta"):
        vit, mllm = VisualTokenizer(cfg.vision), SeedStoryMLLM(cfg.mllm)
        detok, vae = build_detokenizer(cfg.detokenizer), build_vae(cfg.detokenizer.vae)
    gen = torch.Generator(device=device).manual_seed(0)
    for module in (vit, mllm, detok, vae):
        module.to_empty(device=device)
        for name, p in module.named_parameters():
            with torch.no_grad():
                if name.endswith("bias"):
                    p.zero_()
                elif p.dim() == 1:
                    p.fill_(1.0)  # norm scales
                else:
                    p.normal_(0.0, 0.02, generator=gen)
        for r in (m for m in module.modules() if isinstance(m, Resampler)):
            r.reset_parameters()  # the fixed sin-cos tables
        module.to(dtype)
    lm = mllm.language_model
    lm.rotary_emb = LlamaRotaryEmbedding(lm.config).to(device)  # its buffer was left empty on meta
    return Components(
        config=cfg,
        tokenizer=build_byte_tokenizer(cfg.mllm.num_image_tokens),
        visual_tokenizer=vit.eval().requires_grad_(False),
        mllm=mllm.eval().requires_grad_(False),
        detokenizer=detok.eval().requires_grad_(False),
        vae=vae.eval().requires_grad_(False),
        scheduler=build_scheduler(cfg.detokenizer.scheduler),
    )


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3) -> float:
    """Best wall time of ``repeats`` calls after one warm-up, synchronising the device."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def scripted_chooser(ids: ImageTokenIds, eos: int, text_tokens: int, text_id: int) -> Callable:
    """Every step: ``text_tokens`` fixed text tokens, then a picture, then EOS (the tokens random weights lack)."""

    def choose(logits: torch.Tensor, generated: list[list[int]]) -> list[int]:
        out = []
        for g in generated:
            if ids.eoi in g:
                out.append(eos)
            elif len(g) >= text_tokens:
                out.append(ids.boi)
            else:
                out.append(text_id)
        return out

    return choose


@torch.no_grad()
def reference_story(parts: Components, features: torch.Tensor, steps: int, text_tokens: int, window: int) -> float:
    """The released algorithm's cost: every step re-encodes the whole window, then decodes token by token."""
    mllm, tok = parts.mllm, parts.tokenizer
    ids = ImageTokenIds.from_tokenizer(tok, mllm.num_image_tokens)
    text = "[INST]" + "a" * (text_tokens - 6)
    img = image_string(mllm.num_image_tokens)
    prompt, feats = "a" * text_tokens + img, [features]
    device = features.device
    start = time.perf_counter()
    for _ in range(steps):
        input_ids = torch.tensor([[tok.bos_token_id, *tok.encode(prompt, add_special_tokens=False)]], device=device)
        embeds = mllm.embed_inputs(input_ids, torch.stack(feats), image_slot_mask(input_ids, ids))
        cache = DynamicCache(config=mllm.language_model.config)
        out = mllm.causal_lm(inputs_embeds=embeds, cache=cache, use_cache=True, logits_to_keep=1)
        generated = [*tok.encode(text, add_special_tokens=False), *ids.sequence, tok.eos_token_id]
        hidden = []
        for token in generated:  # one forward per token, as HF generate
            out = mllm.causal_lm(
                input_ids=torch.tensor([[token]], device=device),
                cache=cache,
                use_cache=True,
                output_hidden_states=True,
                logits_to_keep=1,
            )
            hidden.append(out.hidden_states[-1][:, -1])
        n = mllm.num_image_tokens
        picture = torch.stack(hidden[-n - 2 : -2], dim=1)
        feats.append(mllm.regress_image_features(picture)[0])
        prompt += text + img
        while len(feats) > window:
            prompt = prompt[prompt.index("</img>") + len("</img>") + len("[INST]") :]
            feats.pop(0)
    sync(device)
    return time.perf_counter() - start


def low_vram_check(parts, pipe, writer, opening, args, device, log) -> None:
    """Run the two halves one after the other under a 24 GiB cap, each model on the GPU only while used."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    total = torch.cuda.get_device_properties(index).total_memory
    for module in (parts.visual_tokenizer, parts.mllm, parts.detokenizer, parts.vae):
        module.to("cpu")
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(24 * 2**30 / total, index)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        parts.mllm.to(device)
        [story] = writer.write([StoryRequest("a" * args.text_tokens, opening, num_steps=args.story_steps)])
        log("low_vram_write_peak_gib", round(torch.cuda.max_memory_allocated(device) / 2**30, 2))
        parts.mllm.to("cpu")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        parts.detokenizer.to(device)
        parts.vae.to(device)
        pipe.draw([s.features for s in story.steps[:4]])
        log("low_vram_draw_peak_gib", round(torch.cuda.max_memory_allocated(device) / 2**30, 2))
        log("low_vram_seconds_25_steps_4_pictures", round(time.perf_counter() - start, 1))
    except torch.OutOfMemoryError as err:
        log("low_vram_error", str(err).splitlines()[0])
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="seed-story-george")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--story-steps", type=int, default=25)
    parser.add_argument("--text-tokens", type=int, default=48, help="generated text tokens per story step")
    parser.add_argument("--image-steps", type=int, default=50, help="Euler steps per picture")
    parser.add_argument("--compile", action="store_true", help="also time the UNet under torch.compile")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-low-vram", action="store_true", help="skip the 24 GiB sequential-halves check")
    parser.add_argument("--only-low-vram", action="store_true", help="build, then only the 24 GiB check")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_profile.json")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    cfg = from_preset(args.preset)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    flops, bandwidth = next((v for k, v in HARDWARE.items() if k in name), (None, None))
    report: dict = {"preset": args.preset, "device": name, "dtype": str(dtype), "torch": torch.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def log(key: str, value: object) -> None:
        # Written after every figure, so a run cut short still leaves what it measured.
        report[key] = value
        print(f"{key}: {value}", flush=True)
        args.out.write_text(json.dumps(report, indent=2))

    t0 = time.perf_counter()
    parts = materialise(cfg, device, dtype)
    merge_lora_for_inference(parts.mllm)
    log("build_seconds", round(time.perf_counter() - t0, 1))
    if device.type == "cuda":
        log("weights_gib", round(torch.cuda.memory_allocated(device) / 2**30, 2))

    if args.only_low_vram:
        writer = StoryWriter(parts.mllm, parts.tokenizer)
        text_id = parts.tokenizer.encode("a", add_special_tokens=False)[0]
        chooser = scripted_chooser(writer.image_ids, parts.tokenizer.eos_token_id, args.text_tokens, text_id)
        scripted = StoryWriter(parts.mllm, parts.tokenizer, WriterSettings(), chooser=chooser)
        pipe = StoryPipeline(parts, draw_settings=DrawSettings(num_inference_steps=args.image_steps, batch_size=4))
        pipe.negative_features  # noqa: B018 - computed once while the ViT is on the GPU
        opening = torch.randn(cfg.vision.n_queries, cfg.vision.output_dim)
        low_vram_check(parts, pipe, scripted, opening, args, device, log)
        return

    # -- visual tokenizer ----------------------------------------------------------------------------
    s = cfg.vision.image_size
    for b in (1, 8):
        pixels = torch.randn(b, 3, s, s, device=device, dtype=dtype)
        with torch.no_grad():
            log(
                f"vit_ms_per_image_b{b}", round(1000 * timed(lambda p=pixels: parts.visual_tokenizer(p), device) / b, 2)
            )

    # -- MLLM prefill / decode through the engine's decoder and cache -----------------------------------
    writer = StoryWriter(parts.mllm, parts.tokenizer)
    dec, hidden = writer.decoder, cfg.mllm.llm.hidden_size
    llm_bytes = sum(p.numel() * p.element_size() for p in parts.mllm.llm.parameters())
    kv_bytes_per_token = 2 * cfg.mllm.llm.num_hidden_layers * cfg.mllm.llm.num_key_value_heads * dec.head_dim * 2
    prefill_len, context = (1024, 1024) if device.type == "cuda" else (64, 64)
    with torch.no_grad():
        # The lean decoder must compute what transformers computes, in this dtype too.
        x = torch.randint(3, 250, (1, 64), device=device)
        ours = dec(
            parts.mllm.language_model.embed_tokens(x),
            dec.new_cache(1, device, dtype),
            torch.ones_like(x, dtype=torch.bool),
        )
        theirs = parts.mllm.language_model(input_ids=x).last_hidden_state
        log("decoder_vs_transformers_max_rel_diff", round(float((ours - theirs).abs().max() / theirs.abs().max()), 5))
        for b in (1, 4):
            x = torch.randn(b, prefill_len, hidden, device=device, dtype=dtype)
            v = torch.ones(b, prefill_len, dtype=torch.bool, device=device)
            t = timed(lambda x=x, v=v, b=b: dec(x, dec.new_cache(b, device, dtype), v), device)
            log(f"prefill_tokens_per_s_b{b}", round(b * prefill_len / t))
        for b in (1, 4, 16):
            kv = dec.new_cache(b, device, dtype)
            dec(
                torch.randn(b, context, hidden, device=device, dtype=dtype),
                kv,
                torch.ones(b, context, dtype=torch.bool, device=device),
            )
            x1, v1 = (
                torch.randn(b, 1, hidden, device=device, dtype=dtype),
                torch.ones(b, 1, dtype=torch.bool, device=device),
            )
            n = 32

            def decode(kv=kv, x1=x1, v1=v1, n=n) -> None:
                for _ in range(n):
                    parts.mllm.lm_head(dec(x1, kv, v1)[:, -1])
                kv.length -= n
                kv.next_pos -= n

            t = timed(decode, device) / n
            log(f"decode_tokens_per_s_b{b}", round(b / t, 1))
            if bandwidth:
                floor = (llm_bytes + b * (context + n) * kv_bytes_per_token) / bandwidth
                log(f"decode_fraction_of_bandwidth_limit_b{b}", round(floor / t, 3))

    # -- de-tokenizer ---------------------------------------------------------------------------------
    size = cfg.detokenizer.image_size
    pipe = StoryPipeline(parts, draw_settings=DrawSettings(num_inference_steps=args.image_steps, batch_size=4))
    unet, latent = parts.detokenizer.unet, size // cfg.detokenizer.vae.downscale
    feats = torch.randn(4, cfg.vision.n_queries, cfg.vision.output_dim, device=device, dtype=dtype)

    def unet_step(b: int, model=unet) -> Callable[[], object]:
        lat = torch.randn(2 * b, 4, latent, latent, device=device, dtype=dtype)  # CFG doubles the batch
        emb, pooled = parts.detokenizer.encode(torch.cat([feats[:b], feats[:b]]))
        ids = torch.tensor([[size, size, 0, 0, size, size]] * 2 * b, device=device, dtype=dtype)
        t = torch.full((2 * b,), 500, device=device)
        cond = {"time_ids": ids, "text_embeds": pooled}
        return lambda: model(lat, t, encoder_hidden_states=emb, added_cond_kwargs=cond).sample

    with torch.no_grad():
        for b in (1, 4):
            t = timed(unet_step(b), device)
            log(f"unet_step_ms_b{b}", round(1000 * t, 1))
            if flops and size == 1024:
                log(f"unet_fraction_of_flop_limit_b{b}", round(2 * b * UNET_TFLOP_PER_IMAGE_1024 * 1e12 / flops / t, 3))
            log(f"image_seconds_b{b}", round(timed(lambda b=b: pipe.draw(feats[:b].float().cpu()), device, 1) / b, 2))
        if args.compile:
            compiled = torch.compile(unet)
            t = timed(unet_step(4, compiled), device)
            log("unet_step_ms_b4_compiled", round(1000 * t, 1))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    # -- a whole story: engine vs reference algorithm -----------------------------------------------------
    ids = writer.image_ids
    text_id = parts.tokenizer.encode("a", add_special_tokens=False)[0]
    chooser = scripted_chooser(ids, parts.tokenizer.eos_token_id, args.text_tokens, text_id)
    scripted = StoryWriter(parts.mllm, parts.tokenizer, WriterSettings(), chooser=chooser)
    opening = torch.randn(cfg.vision.n_queries, cfg.vision.output_dim)
    for b in (1, 16) if device.type == "cuda" else (1, 4):
        requests = [StoryRequest("a" * args.text_tokens, opening, num_steps=args.story_steps) for _ in range(b)]
        sync(device)
        start = time.perf_counter()
        stories = scripted.write(requests)
        sync(device)
        seconds = time.perf_counter() - start
        assert all(len(st.steps) == args.story_steps for st in stories)
        log(f"engine_story_seconds_b{b}", round(seconds, 2))
        log(f"engine_peak_kv_tokens_b{b}", max(st.peak_kv_tokens for st in stories))
        if device.type == "cuda":
            log(f"engine_story_peak_gib_b{b}", round(torch.cuda.max_memory_allocated(device) / 2**30, 2))
    if not args.skip_reference:
        t = reference_story(parts, opening.to(device, dtype), args.story_steps, args.text_tokens, window=8)
        log("reference_story_seconds_b1", round(t, 2))
        log("engine_speedup_vs_reference_b1", round(t / report["engine_story_seconds_b1"], 2))
    per_story = report["engine_peak_kv_tokens_b1"] * kv_bytes_per_token
    log("kv_mib_per_story", round(per_story / 2**20, 3))
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        headroom = total - torch.cuda.memory_allocated(device) - 4 * 2**30  # activations + allocator slack
        log("largest_batch_estimate", int(headroom // per_story))

    if device.type == "cuda" and not args.skip_low_vram:
        low_vram_check(parts, pipe, scripted, opening, args, device, log)

    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
