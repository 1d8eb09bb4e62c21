"""Pre-training stages for from-scratch models: the ViT as an autoencoder, the VAE; and the BPE tokenizer."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from seed_story.components import load_components
from seed_story.models.visual_tokenizer import VisualTokenizer
from seed_story.presets import from_preset
from seed_story.tokenizer import ImageTokenIds, image_string, load_tokenizer, train_bpe_tokenizer
from seed_story.training import TrainConfig
from seed_story.training.pretrain import ViTAutoencoder, picture_batches
from seed_story.training.run import build_task
from seed_story.training.trainer import Trainer, TrainResult


@pytest.fixture(scope="module")
def picture_glob(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("pictures") / "nested"
    folder.mkdir()
    rng = random.Random(0)
    for i in range(12):
        image = Image.new("RGB", (64, 64), tuple(rng.randrange(256) for _ in range(3)))
        x = rng.randrange(8, 40)
        ImageDraw.Draw(image).ellipse([x, 20, x + 20, 40], fill=tuple(rng.randrange(256) for _ in range(3)))
        image.save(folder / f"{i}.png")
    return str(folder.parent / "**" / "*.png")


class _Interrupted(Exception):
    pass


def _run(cfg: TrainConfig, interrupt_after: int | None = None) -> TrainResult:
    task = build_task(cfg)
    batches = picture_batches(cfg.data, task.parts, cfg.seed)
    if interrupt_after is not None:
        batches = itertools.chain(itertools.islice(batches, interrupt_after), _raise())
    return Trainer(cfg, task, batches).fit()


def _raise():
    raise _Interrupted
    yield


@pytest.mark.parametrize("stage", ["vision", "vae"])
def test_pretraining_stage_trains_its_network_and_resumes_exactly(stage, picture_glob, tmp_path):
    values = dict(preset="tiny", mixed_precision="no", max_steps=8, save_every=3, learning_rate=3e-3, warmup_steps=1,
                  data={"kind": "pictures", "images": picture_glob, "batch_size": 4})  # fmt: skip
    whole = _run(TrainConfig.for_stage(stage, output_dir=str(tmp_path / "whole"), **values))
    split = TrainConfig.for_stage(stage, output_dir=str(tmp_path / "split"), **values)
    with pytest.raises(_Interrupted):
        _run(split, interrupt_after=4)
    resumed = _run(split.model_copy(update={"resume": True}))
    assert resumed.losses == whole.losses  # bit-identical: the picture stream is skipped, not replayed
    assert whole.losses[-1] < whole.losses[0]
    part = "visual_tokenizer" if stage == "vision" else "vae"
    start = build_task(TrainConfig.for_stage(stage, output_dir=str(tmp_path / "x"), **values)).parts
    trained = load_components(whole.checkpoint)
    assert any(not torch.equal(a, b) for a, b in _pairs(trained, start, part))
    assert all(torch.equal(a.float(), b.float()) for a, b in _pairs(trained, start, "mllm"))  # untouched


def _pairs(a, b, part: str):
    return zip(getattr(a, part).state_dict().values(), getattr(b, part).state_dict().values(), strict=True)


def test_pretraining_needs_pictures_and_stages_need_stories(picture_glob):
    with pytest.raises(ValueError, match="stage vision trains on pictures"):
        TrainConfig.for_stage("vision", output_dir="x", data={"kind": "toy"})
    with pytest.raises(ValueError, match="stage stage1 trains on toy or storystream"):
        TrainConfig.for_stage("stage1", output_dir="x", data={"kind": "pictures", "images": picture_glob})


def test_bpe_tokenizer_has_the_presets_vocabulary_and_image_tokens(tmp_path):
    cfg = from_preset("seed-story-mini")
    texts = [f"Mia the red circle walks to the lake. Tom waves {i} times." for i in range(300)]
    tok = train_bpe_tokenizer(texts, cfg.mllm.llm.vocab_size, cfg.mllm.num_image_tokens)
    assert len(tok) == cfg.mllm.vocab_size
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<unk>", "<s>", "</s>"]
    text = "[INST]Mia waves." + image_string(cfg.mllm.num_image_tokens)
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text and len(ids) < len(text) // 2  # merges learnt, image tokens whole
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok", cfg.mllm.num_image_tokens)
    assert again.encode(text, add_special_tokens=False) == ids
    assert ImageTokenIds.from_tokenizer(again, cfg.mllm.num_image_tokens).boi == cfg.mllm.llm.vocab_size


def test_full_llm_trains_the_base_weights_too(tiny_config):
    from seed_story.components import build_random
    from seed_story.training.stages import set_mllm_trainable

    lora_only = set(set_mllm_trainable(build_random(tiny_config).mllm))
    full = set(set_mllm_trainable(build_random(tiny_config).mllm, full_llm=True))
    assert lora_only < full
    assert any("q_proj.base_layer.weight" in n for n in full - lora_only)
    assert not any("original_module" in n or n.endswith("pos_embed") for n in full)


def test_export_halves_a_checkpoint_and_it_loads_into_float32(toy_checkpoint_dir, tmp_path):
    from seed_story.checkpoints.native import export_checkpoint, read_manifest

    export_checkpoint(toy_checkpoint_dir, tmp_path / "half", torch.float16)
    size = lambda d: sum(f.stat().st_size for f in d.glob("*.safetensors"))  # noqa: E731
    assert size(tmp_path / "half") < 0.55 * size(toy_checkpoint_dir)
    assert read_manifest(tmp_path / "half").dtype == "float16"
    full, half = load_components(toy_checkpoint_dir), load_components(tmp_path / "half")
    for a, b in zip(full.mllm.state_dict().values(), half.mllm.state_dict().values(), strict=True):
        assert b.dtype == a.dtype and torch.allclose(a, b, atol=2e-3, rtol=2e-3)


def test_export_can_take_the_detokenizer_from_another_checkpoint(toy_checkpoint_dir, tmp_path):
    from seed_story.checkpoints.native import read_manifest, save_checkpoint
    from seed_story.cli.main import app
    from seed_story.components import build_random
    from seed_story.models.detokenizer import build_detokenizer

    toy = read_manifest(toy_checkpoint_dir).model
    # Another de-tokenizer shape over the same VAE, as stage 1 may train one.
    det_cfg = toy.detokenizer.model_copy(
        update={"resampler": toy.detokenizer.resampler.model_copy(update={"depth": 1})}
    )
    other = build_detokenizer(det_cfg)
    save_checkpoint(tmp_path / "stage1", toy.model_copy(update={"detokenizer": det_cfg}), {"detokenizer": other})
    args = [
        "checkpoints",
        "export",
        str(toy_checkpoint_dir),
        str(tmp_path / "out"),
        "--detokenizer",
        str(tmp_path / "stage1"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = load_components(tmp_path / "out")  # strict: the manifest's config fits the swapped weights
    assert out.config.detokenizer.resampler.depth == 1
    assert read_manifest(tmp_path / "out").metadata["detokenizer_from"] == str(tmp_path / "stage1")
    for a, b in zip(other.state_dict().values(), out.detokenizer.state_dict().values(), strict=True):
        assert torch.allclose(a, b.float(), atol=2e-3, rtol=2e-3)
    toy_mllm = load_components(toy_checkpoint_dir).mllm.state_dict()
    assert all(torch.allclose(toy_mllm[k], v, atol=2e-3, rtol=2e-3) for k, v in out.mllm.state_dict().items())
    # A de-tokenizer trained over another VAE cannot be paired with this model's.
    vae = det_cfg.vae.model_copy(update={"scaling_factor": 0.5})
    stranger = toy.model_copy(update={"detokenizer": det_cfg.model_copy(update={"vae": vae})})
    save_checkpoint(tmp_path / "stranger", stranger, {"detokenizer": build_random(stranger).detokenizer})
    args[-1] = str(tmp_path / "stranger")
    assert CliRunner().invoke(app, args).exit_code != 0


def test_vision_stage_writes_each_tokens_position_into_the_token():
    # The de-tokenizer's resampler reads the ViT features with no positions: the vision stage must teach the ViT
    # to carry them in the tokens (a linear head reads each token's grid index from its content alone).
    torch.manual_seed(0)
    vit = VisualTokenizer(from_preset("tiny").vision)
    model = ViTAutoencoder(vit)
    images = torch.randn(4, 3, vit.cfg.image_size, vit.cfg.image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = model(images)
    for _ in range(40):
        optimizer.zero_grad()
        model(images)["loss"].backward()
        optimizer.step()
    after = model(images)
    assert set(after) == {"loss", "pixel_loss", "position_loss", "position_accuracy"}
    assert before["position_accuracy"] < 0.2 < 0.9 < after["position_accuracy"]
    assert after["pixel_loss"] < before["pixel_loss"]
