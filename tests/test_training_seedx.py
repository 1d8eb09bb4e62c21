"""Stage 2 from the released SEED-X agent (``seedx/checkpoint-30000``), as the release's stage-2 script starts.

A tiny ``pretrained/`` folder laid out like the release gets a SEED-X agent file whose weights differ from the
SEED-Story agent's (and from the Llama folder's), plus SEED-X's ``patch_pos_embed`` and a persisted RoPE buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from seed_story.checkpoints.check import check_pretrained
from seed_story.checkpoints.remap import PEFT_PREFIX, peft04_to_current
from seed_story.checkpoints.strict import CheckpointMismatchError
from seed_story.components import Components, build_random
from seed_story.presets import from_preset
from seed_story.training import TrainConfig, train
from seed_story.training.run import build_components
from tests.release_support import StateDict, adapter_file_state, agent_file_state, save_file_at, write_release

SEEDX = "seedx/checkpoint-30000/pytorch_model.bin"
STAGE1 = "detokenizer/detokenizer_pretrained/checkpoint-55000/pytorch_model.bin"
LORA_A = f"{PEFT_PREFIX}model.layers.0.self_attn.q_proj.lora_A.default.weight"


def _shifted(state: StateDict, seed: int) -> StateDict:
    gen = torch.Generator().manual_seed(seed)
    return {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in state.items()}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Components, StateDict, StateDict]:
    """(root, the components written as the SEED-Story release, SEED-X agent file, stage-1 de-tokenizer file)."""
    parts = build_random(from_preset("tiny"), seed=1)
    root = tmp_path_factory.mktemp("pretrained")
    write_release(root, parts)
    seedx = _shifted(agent_file_state(parts.mllm), seed=2)
    seedx[f"{PEFT_PREFIX}model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    seedx["patch_pos_embed"] = torch.randn(4, parts.config.mllm.llm.hidden_size)
    stage1 = _shifted(adapter_file_state(parts.detokenizer), seed=3)
    save_file_at(root, SEEDX, seedx)
    save_file_at(root, STAGE1, stage1)
    return root, parts, seedx, stage1


def _cfg(out: Path, **values: object) -> TrainConfig:
    base = dict(output_dir=str(out), preset="tiny", init_agent="seedx", data={"kind": "toy"})
    return TrainConfig.for_stage("stage2", **{**base, **values})


def test_stage2_starts_from_the_seedx_weights(release, tmp_path):
    root, parts, seedx, stage1 = release
    loaded = build_components(_cfg(tmp_path, init=str(root)))
    got = loaded.mllm.state_dict()
    arrived = peft04_to_current(seedx, got.keys())
    dropped = {"patch_pos_embed", f"{PEFT_PREFIX}model.layers.0.self_attn.rotary_emb.inv_freq"}
    assert set(arrived) - set(got) == dropped
    for key in set(arrived) - dropped:
        torch.testing.assert_close(got[key], arrived[key], rtol=0, atol=0, msg=key)
    # The frozen projections come from the Llama folder, untouched.
    want = parts.mllm.state_dict()
    base = [k for k in got if k.endswith("base_layer.weight")]
    assert base and all(torch.equal(got[k], want[k]) for k in base)
    # The release pairs SEED-X's agent with the stage-1 de-tokenizer (stage 3 adapts it), not the adapted one.
    detok = loaded.detokenizer.state_dict()
    assert all(torch.equal(detok[k], v) for k, v in stage1.items())


def _broken(edit: Callable[[StateDict], object]) -> Callable[[StateDict], StateDict]:
    def apply(state: StateDict) -> StateDict:
        state = dict(state)
        edit(state)
        return state

    return apply


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (_broken(lambda s: s.pop(LORA_A)), f"1 missing key(s): {LORA_A}"),
        (
            _broken(lambda s: s.__setitem__("output_resampler.patch_proj.weight", torch.zeros(2))),
            "1 unexpected key(s): output_resampler.patch_proj.weight",
        ),
        # A rank-8 LoRA where the preset has rank 4: the r32-vs-r16 case of SEED-X-17B's config against SEED-Story's.
        (
            _broken(lambda s: s.__setitem__(LORA_A, torch.zeros(8, 64))),
            f"1 key(s) with the wrong shape: {LORA_A}: checkpoint (8, 64) vs model (4, 64)",
        ),
    ],
    ids=["missing", "unexpected", "wrong-shape"],
)
def test_a_seedx_file_that_does_not_fit_fails_on_one_line(release, tmp_path, edit, needle):
    root, _, seedx, _ = release
    copy = tmp_path / "pretrained"
    copy.mkdir()
    for entry in root.iterdir():
        if entry.name != "seedx":
            (copy / entry.name).symlink_to(entry)
    save_file_at(copy, SEEDX, edit(seedx))
    with pytest.raises(CheckpointMismatchError) as err:
        build_components(_cfg(tmp_path / "out", init=str(copy)))
    message = str(err.value)
    assert "\n" not in message and message.startswith("SEED-X agent checkpoint ")
    assert needle in message


def test_init_agent_seedx_needs_stage2_and_a_released_folder(tmp_path):
    with pytest.raises(ValidationError, match="seedx is stage 2's starting point, not stage3's"):
        TrainConfig.for_stage("stage3", output_dir=str(tmp_path), init="x", init_agent="seedx", data={"kind": "toy"})
    with pytest.raises(ValidationError, match="init_agent: seedx needs init"):
        _cfg(tmp_path)
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "seed_story.json").write_text("{}")
    with pytest.raises(ValueError, match="is our checkpoint"):
        build_components(_cfg(tmp_path / "out", init=str(ours)))


def test_pretrained_check_reports_the_seedx_agent(release):
    root, *_ = release
    status = {s.key: s for s in check_pretrained(root, from_preset("tiny"), deep=True)}
    assert status["seedx_agent"].status == "ok", status["seedx_agent"].detail
    assert "1 [seedx-patch-positions]" in status["seedx_agent"].detail
    assert status["detokenizer_pretrained"].status == "ok"


def test_stage2_trains_a_few_steps_from_seedx(release, tmp_path):
    root, *_ = release
    cfg = _cfg(tmp_path, init=str(root), max_steps=2, mixed_precision="no", save_every=100, warmup_steps=0)
    result = train(cfg)
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    assert (result.checkpoint / "seed_story.json").is_file()
