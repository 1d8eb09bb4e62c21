"""Training configs: one ``TrainConfig`` per run, with each stage's reference defaults (the release's training scripts).

Config files are YAML or JSON with the same keys; keys a file leaves out take the stage's defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from seed_story.checkpoints.layout import AgentRelease
from seed_story.config import RecLoss, StrictModel

Stage = Literal["vision", "vae", "stage1", "stage2", "stage3"]
# ``vision`` and ``vae`` pre-train the two networks the released model took ready-made (a model trained from
# scratch, such as SEED-Story-Mini, needs them first); stages 1-3 are the paper's.
STAGES: tuple[str, ...] = ("vision", "vae", "stage1", "stage2", "stage3")

# The reference's hyper-parameters (the release's training scripts). Stage 1 was never released: it reuses stage 3's
# optimiser settings (same network, same objective) without gradient accumulation, for as many steps as the
# released stage-1 checkpoint's name says (checkpoint-55000).
_PRETRAIN: dict[str, Any] = dict(
    learning_rate=1e-3,
    weight_decay=0.0,
    betas=(0.9, 0.99),
    eps=1e-8,
    max_steps=1500,
    save_every=500,
    warmup_steps=50,
    min_lr_ratio=0.05,
    gradient_accumulation_steps=1,
)
STAGE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Not in the paper: plain autoencoder settings, sized for minutes on a CPU.
    "vision": _PRETRAIN,
    "vae": _PRETRAIN,
    "stage1": dict(
        learning_rate=1e-4,
        weight_decay=0.03,
        betas=(0.9, 0.999),
        eps=1e-8,
        max_steps=55000,
        save_every=5000,
        warmup_steps=500,
        min_lr_ratio=0.01,
        gradient_accumulation_steps=1,
    ),
    "stage2": dict(
        learning_rate=1e-4,
        weight_decay=0.05,
        betas=(0.9, 0.98),
        eps=1e-6,
        max_steps=6000,
        save_every=3000,
        warmup_steps=100,
        min_lr_ratio=0.05,
        gradient_accumulation_steps=1,
    ),
    "stage3": dict(
        learning_rate=1e-4,
        weight_decay=0.03,
        betas=(0.9, 0.999),
        eps=1e-8,
        max_steps=1600,
        save_every=1600,
        warmup_steps=500,
        min_lr_ratio=0.01,
        gradient_accumulation_steps=4,
    ),
}


class ToyData(StrictModel):
    """Generated toy stories (``seed_story.storyworld.toy``) with synthetic pictures: for tests and smoke runs.

    Stage 1 gets pictures of single scenes, stage 2 interleaved stories, stage 3 both. A config trains on them
    only where it says ``kind: toy``: a model trained on them learns nothing of real stories.

    With N data-parallel processes every rank draws the same ``batch_size`` x N stories and keeps its own
    ``batch_size``, so the global batch is the one a single process with ``batch_size`` x N would draw.
    """

    kind: Literal["toy"] = "toy"
    batch_size: int = Field(4, gt=0)
    min_scenes: int = Field(2, ge=2)
    max_scenes: int = Field(6, ge=2)
    supervise_all: bool = Field(
        False, description="stories: supervise every caption, not only the last (the toy model learns faster)"
    )

    @model_validator(mode="after")
    def _check(self) -> ToyData:
        if self.max_scenes < self.min_scenes:
            raise ValueError(f"max_scenes {self.max_scenes} < min_scenes {self.min_scenes}")
        return self


def _as_list(shards: str | list[str]) -> list[str]:
    return [shards] if isinstance(shards, str) else list(shards)


class StoryStreamData(StrictModel):
    """StoryStream Parquet shards (``seed-story data ingest-storystream``) streamed by ``StoryStreamDataset``.

    Every stage reads the same shards: stage 2 the interleaved sequences, stage 1 the ViT and SD pixels of
    each sequence's target picture, stage 3 the sequence and its target's SD pixels (the release's
    decode_long_story_data, step 3). ``image_size`` (ViT) and ``sd_size`` (de-tokenizer) default to the model preset's.

    Example (YAML)::

        data: {kind: storystream, shards: shards/george, batch_size: 30, num_workers: 4}
    """

    kind: Literal["storystream"] = "storystream"
    shards: str | list[str] = Field(
        description="folder of Parquet shards, or a list of folders and shard files read as one (a data mix); "
        "relative paths are read from the working directory"
    )

    @field_validator("shards")
    @classmethod
    def _some_shards(cls, value: str | list[str]) -> str | list[str]:
        paths = _as_list(value)
        if not paths or not all(p.strip() for p in paths):
            raise ValueError("no StoryStream shards configured: data.shards names no folder or file")
        return value

    def shard_paths(self) -> list[str]:
        """``shards`` as a list of folders and files."""
        return _as_list(self.shards)

    batch_size: int = Field(30, gt=0, description="samples per batch on each data-parallel rank")
    num_workers: int = Field(0, ge=0, description="DataLoader workers per rank (resume needs the same number)")
    seed: int | None = Field(None, description="data order and k draws; None = the run's seed")
    epochs: int | None = Field(None, gt=0, description="passes over the shards; None cycles for ever")
    max_length: int = Field(1280, gt=0, description="sequences this long or longer are dropped")
    pad_to_max_length: bool = Field(True, description="pad every batch to max_length, else to its longest")
    image_size: int | None = Field(None, gt=0, description="ViT input size; None = the preset's")
    sd_size: int | None = Field(None, gt=0, description="stages 1/3 SD picture size; None = the preset's")
    swap_crop_offsets: bool = Field(True, description="reference quirk: horizontal crop offset in time_ids' top slot")
    min_resolution: int = Field(128, ge=0, description="reject a sample whose last picture has a shorter side")
    min_aspect_ratio: float = Field(0.2, gt=0, le=1, description="reject width/height outside [r, 1/r]")
    caption_generation: float = Field(
        0.5,
        ge=0,
        le=1,
        description="image-caption pairs: share trained caption -> picture (the rest picture -> caption)",
    )


class JudgeGate(StrictModel):
    """Story-world stories the candidate illustrates for the judge (``seed_story.storyworld.judge``).

    Each model illustrates the true captions of ``stories`` stories of a world seed it never trained on, from
    their true openings (the judge's ``story`` condition); the judge reads the pictures back.
    """

    world_seed: int = Field(11, description="a story-world seed no training run used")
    stories: int = Field(4, gt=0)
    steps: int = Field(4, gt=0, description="steps after the opening, per story")
    draw_steps: int = Field(10, gt=0, description="denoising steps per picture (few: the same for both models)")
    guidance: float = Field(1.0, ge=1, description="classifier-free guidance (SEED-Story-Mini's 1.0)")


class GateConfig(StrictModel):
    """What a candidate is scored on and what it must do there (``seed_story.training.gate``).

    Two sources: ``data``, held-out StoryStream shards scored with the stage-2 losses (``heldout_*``, lower is
    better), and ``judge``, story-world stories drawn and read back by the judge (``judge_*``, higher is better).
    Each metric named needs its source.

    Example (YAML, in a training config)::

        gate: {data: {kind: storystream, shards: shards/heldout, batch_size: 8}, batches: 8, margin: 0.01}
        gate: {judge: {stories: 4}, metrics: [judge_reconstruction, judge_character_consistency], margin: 0.05}
    """

    data: StoryStreamData | None = Field(
        None, description="held-out shards, read once in order with data.seed (default 0)"
    )
    batches: int = Field(8, gt=0, description="batches scored per model (fewer if the held-out set ends first)")
    judge: JudgeGate | None = Field(None, description="story-world stories scored by the judge")
    margin: float = Field(0.0, ge=0, description="allowed relative loss increase (score decrease) over production")
    metrics: list[str] = Field(default_factory=lambda: ["heldout_loss"], min_length=1)

    @model_validator(mode="after")
    def _sources_named(self) -> GateConfig:
        for metric in self.metrics:
            source = metric.split("_", 1)[0]
            if source == "heldout" and self.data is None:
                raise ValueError(f"gate metric {metric} needs gate.data (held-out shards)")
            if source == "judge" and self.judge is None:
                raise ValueError(f"gate metric {metric} needs gate.judge (story-world stories)")
        return self


class PictureData(StrictModel):
    """Pictures matched by a glob (e.g. a StoryWorld ``images/**/*.png``), in a seeded endless shuffle.

    Example (YAML)::

        data: {kind: pictures, images: "data/world/images/**/*.png", batch_size: 64}
    """

    kind: Literal["pictures"] = "pictures"
    images: str = Field(description="glob of picture files (recursive '**' allowed)")
    batch_size: int = Field(64, gt=0)


def _data_kind(value: Any) -> str | None:
    # No default kind: toy data is only ever trained on where a config asks for it by name.
    return value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)


DataSource = Annotated[
    Annotated[ToyData, Tag("toy")]
    | Annotated[StoryStreamData, Tag("storystream")]
    | Annotated[PictureData, Tag("pictures")],
    Discriminator(_data_kind),
]


class TrainConfig(StrictModel):
    """Everything one training run needs; build with :meth:`for_stage` to get the stage's defaults.

    ``init`` is the checkpoint to start from (a native checkpoint or a released ``pretrained/`` folder);
    without it the ``preset`` is built at random. Stage 3 starts from stage 2's output (``init``) and may
    take its starting de-tokenizer, with its config, from a stage-1 output (``detokenizer_init``). A model
    trained from scratch pre-trains its ViT and VAE in two independent runs; stages 1 and 2 start from the
    ViT's run (``init``) and take the VAE, with its scaling factor, from the other (``vae_init``).

    Example::

        cfg = TrainConfig.for_stage("stage3", output_dir="runs/s3", init="runs/s2/final")
    """

    stage: Stage
    output_dir: str
    preset: str = "tiny"
    init: str | None = None
    init_agent: AgentRelease = Field(
        "story", description="stage 2 from a released folder: the SEED-Story-George agent, or SEED-X's (the reference)"
    )
    detokenizer_init: str | None = None
    vae_init: str | None = None
    tokenizer: str | None = Field(None, description="tokenizer folder for a model built from the preset (no init)")
    seed: int = 0
    max_steps: int = Field(gt=0)
    schedule_steps: int | None = Field(
        None, gt=0, description="length of the learning-rate schedule; None = max_steps (a run may stop before its end)"
    )
    learning_rate: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    betas: tuple[float, float]
    eps: float = Field(gt=0)
    warmup_steps: int = Field(ge=0)
    min_lr_ratio: float = Field(ge=0, le=1)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "bf16"
    log_every: int = Field(10, gt=0, description="log a line every N optimiser steps (CSV/JSONL get every step)")
    save_every: int = Field(gt=0, description="write a resumable checkpoint every N optimiser steps")
    keep_checkpoints: int = Field(2, gt=0, description="resumable checkpoints kept on disk (oldest deleted)")
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: the LLM's layers (stage 2), the UNet's blocks (1/3)"
    )
    full_unet: bool = Field(False, description="stages 1/3: train the whole UNet, not only to_k/to_v")
    snr_gamma: float | None = Field(None, gt=0, description="stages 1/3: Min-SNR-γ loss weighting (None = plain)")
    high_noise_weight: float = Field(
        1.0, gt=0, description="stages 1/3: draw timesteps in the noisier half this many times as often (1 = uniform)"
    )
    true_feature_fraction: float = Field(
        0.0, ge=0, le=1, description="stage 3: share of targets drawn from their true ViT features (stage 1's task)"
    )
    full_llm: bool = Field(False, description="stage 2: train the LLM's base weights too (a model from scratch)")
    rec_loss_scale: float | None = Field(
        None, gt=0, description="stage 2: weight of the cosine regression loss (None keeps the model's, 1.0)"
    )
    rec_loss: RecLoss | None = Field(
        None, description="stage 2: the image regression loss (None keeps the model's, the reference's cosine)"
    )
    kl_weight: float = Field(1e-3, ge=0, description="stage vae: weight of the latents' KL to N(0, 1)")
    resume: bool = Field(False, description="continue from the newest checkpoint in output_dir")
    data: DataSource = Field(description="what to train on: storystream shards, pictures, or (tests) toy stories")
    gate: GateConfig | None = Field(
        None, description="stage 2: the held-out set and rule a finished run must pass to be promoted"
    )

    @model_validator(mode="before")
    @classmethod
    def _data_named(cls, values: Any) -> Any:
        if isinstance(values, dict):
            stage, data = values.get("stage", "this run"), values.get("data")
            if not data:
                raise ValueError(
                    f"no training data configured for {stage}: add a data section "
                    "(kind: storystream with shards; kind: toy only for tests and smoke runs)"
                )
            if isinstance(data, dict) and "kind" not in data:
                raise ValueError(f"data.kind missing for {stage}: storystream, pictures or toy")
        return values

    @model_validator(mode="after")
    def _data_fits_stage(self) -> TrainConfig:
        pretraining = self.stage in ("vision", "vae")
        if pretraining != isinstance(self.data, PictureData):
            need = "pictures (data.kind: pictures)" if pretraining else "toy or storystream data"
            raise ValueError(f"stage {self.stage} trains on {need}, not {self.data.kind}")
        return self

    @model_validator(mode="after")
    def _seedx_starts_stage2(self) -> TrainConfig:
        # Whether init is a released folder (not a checkpoint of ours) is checked when it is read.
        if self.init_agent == "seedx" and self.stage != "stage2":
            raise ValueError(f"init_agent: seedx is stage 2's starting point, not {self.stage}'s")
        if self.init_agent == "seedx" and self.init is None:
            raise ValueError("init_agent: seedx needs init: a released pretrained/ folder with seedx/checkpoint-30000")
        return self

    @classmethod
    def for_stage(cls, stage: str, **values: Any) -> TrainConfig:
        """The stage's reference defaults, overridden by ``values``."""
        if stage not in STAGE_DEFAULTS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
        return cls.model_validate({**STAGE_DEFAULTS[stage], **values, "stage": stage})


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml``/``.json`` file."""
    path = Path(path)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def data_values(path: str | Path, given: dict[str, Any] | None) -> dict[str, Any]:
    """The config file's ``data`` with ``given`` keys merged in (replacing it when ``given`` names another kind)."""
    file = read_config_file(path).get("data") or {}
    if given is None:
        return dict(file)
    same_kind = given.get("kind", file.get("kind")) == file.get("kind")
    return {**file, **given} if same_kind else dict(given)


def load_train_config(path: str | Path, stage: str | None = None, **overrides: Any) -> TrainConfig:
    """Read a YAML/JSON training config; ``stage`` (e.g. from the command line) must agree with the file's.

    Example::

        cfg = load_train_config("configs/train/tiny_stage2.yaml", "stage2", resume=True)
    """
    data = read_config_file(path)
    file_stage = data.pop("stage", None)
    if stage and file_stage and stage != file_stage:
        raise ValueError(f"{path} is a {file_stage} config, not {stage}")
    chosen = stage or file_stage
    if chosen is None:
        raise ValueError(f"{path} names no stage; pass one (stage1, stage2 or stage3)")
    return TrainConfig.for_stage(chosen, **{**data, **overrides})
