"""The MLLM half of story generation: write text and regress picture features, step by step, in batches.

Unlike the released scripts, which re-encode the whole story window at every step with batch size 1, a
story's KV cache is kept between steps: each step prefills only its new tokens (the previous step's text,
when it re-tokenises to what was generated, is not even prefilled again; only its picture is, now as
context features). Once a picture token is chosen the rest of the picture is forced (the release's generate), so the 64
image tokens are fed in one forward instead of 64. Long stories evict whole old steps into a multimodal
attention sink (:mod:`seed_story.generation.layout`), which bounds memory and per-step cost.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedTokenizerBase

from seed_story.generation.decoder import LlamaDecoder, merge_lora_for_inference
from seed_story.generation.kv import StoryKV
from seed_story.generation.layout import RowLayout
from seed_story.generation.logits import choose_tokens, forced_continuation
from seed_story.generation.records import ResumeStep, StoryRequest, WrittenStep, WrittenStory
from seed_story.generation.settings import StopReason, WriterSettings
from seed_story.interleave import image_slot_mask
from seed_story.models.mllm import SeedStoryMLLM
from seed_story.tokenizer import INST, ImageTokenIds, image_string

_TAG = re.compile(r"<[^<>]*>")

# (next-token logits of the rows still decoding, the ids each has generated this step) -> next token ids.
TokenChooser = Callable[[torch.Tensor, list[list[int]]], list[int]]


def clean_text(text: str) -> str:
    """The reference's step text: every ``<...>`` tag (image tokens, ``</s>``) becomes a space, then strip."""
    return _TAG.sub(" ", text).strip()


@dataclass
class _Row:
    """One story's state inside a batch."""

    story: int
    request: StoryRequest
    layout: RowLayout = field(default_factory=RowLayout)
    pending_ids: list[int] = field(default_factory=list)
    pending_features: torch.Tensor | None = None
    generated: list[int] = field(default_factory=list)
    hidden: list[torch.Tensor] = field(default_factory=list)
    decoding: bool = False
    prompt_tokens: int = 0
    kv_tokens: int = 0
    generator: torch.Generator | None = None
    stop: StopReason | None = None
    replay: list[ResumeStep] = field(default_factory=list)  # resumed steps not yet fed to the cache
    offset: int = 0  # steps written before this session (len(request.resume))
    replay_rest: list[int] = field(default_factory=list)  # prompt rest of the resumed step being replayed


class WritingSession:
    """A batch of stories being written; each :meth:`step` advances every unfinished story by one step.

    Example::

        session = writer.session(requests)
        while not session.done:
            for story_index, step in session.step():
                ...
        stories = session.stories
    """

    def __init__(self, writer: StoryWriter, requests: Sequence[StoryRequest]) -> None:
        self.writer = writer
        self.stories = [WrittenStory() for _ in requests]
        mllm = writer.mllm
        self.device = mllm.lm_head.weight.device
        self.rows = [self._start_row(i, r) for i, r in enumerate(requests)]
        self.kv = writer.decoder.new_cache(len(self.rows), self.device, mllm.lm_head.weight.dtype)

    @property
    def done(self) -> bool:
        return not self.rows

    def _start_row(self, index: int, request: StoryRequest) -> _Row:
        w = self.writer
        if len(request.resume) >= request.num_steps:
            raise ValueError(
                f"story {index} resumes {len(request.resume)} written steps but has only {request.num_steps}: "
                "nothing is left to write"
            )
        row = _Row(story=index, request=request, replay=list(request.resume), offset=len(request.resume))
        text = request.opening_text + w.image_text
        if request.mode == "illustrate":
            text += w.separator + request.texts[0]
        row.pending_ids = [w.tokenizer.bos_token_id, *w.encode(text)]
        row.pending_features = request.opening_features.unsqueeze(0)
        if row.replay:
            kept, row.replay_rest = self._replayed_text(row, 1)
            row.pending_ids += kept
        if w.settings.sampling.do_sample:
            row.generator = torch.Generator(device=self.device).manual_seed(request.seed)
            state = request.resume[-1].generator_state if request.resume else None
            if state is not None:
                row.generator.set_state(state)
        return row

    # -- one step for every unfinished story ----------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[tuple[int, WrittenStep]]:
        """Advance all unfinished stories by one step; returns ``(story index, step)`` for each new step."""
        if self.done:
            return []
        start = time.perf_counter()
        self._evict()
        logits = self._prefill()
        # Rows still replaying resumed steps only fill their cache this step; they decode nothing.
        replaying = {id(row) for row in self.rows if row.replay}
        for row in self.rows:
            row.decoding = id(row) not in replaying
        self._decode(logits)
        features = self._regress()
        seconds = time.perf_counter() - start
        written = [
            self._replay_step(row) if id(row) in replaying else self._finish_step(row, features.get(id(row)), seconds)
            for row in self.rows
        ]
        out = [(row.story, step) for row, step in zip(self.rows, written, strict=True) if step is not None]
        keep_rows = [i for i, row in enumerate(self.rows) if row.stop is None]
        for row in self.rows:
            if row.stop is not None:
                self.stories[row.story].stop_reason = row.stop
        if len(keep_rows) != len(self.rows):
            self.kv.select(keep_rows, [self.kv.row_slots(i) for i in keep_rows])
            self.rows = [self.rows[i] for i in keep_rows]
        return out

    def _evict(self) -> None:
        """Evict old steps of stories whose window would overflow; squeeze holes out of the cache."""
        sink = self.writer.settings.sink
        keep = []
        for i, row in enumerate(self.rows):
            slots = self.kv.row_slots(i)
            positions = list(range(row.layout.n))
            incoming = int((torch.tensor(row.pending_ids) == self.writer.image_ids.boi).sum())
            while row.layout.images and len(row.layout.images) + incoming > sink.window_images:
                positions = [positions[p] for p in row.layout.evict_oldest(sink)]
            keep.append(slots[positions])
        self.kv.select(list(range(len(self.rows))), keep)

    def _prefill(self) -> torch.Tensor:
        chunks = [row.pending_ids for row in self.rows]
        features = [row.pending_features for row in self.rows if row.pending_features is not None]
        logits, _, _ = self.writer.forward(self.kv, chunks, torch.cat(features) if features else None)
        n_img = self.writer.mllm.num_image_tokens
        for row in self.rows:
            ids = torch.tensor(row.pending_ids)
            starts = (ids == self.writer.image_ids.boi).nonzero().flatten().tolist()
            row.layout.append(len(row.pending_ids), starts, n_img)
            row.prompt_tokens = len(row.pending_ids)
            row.kv_tokens = row.layout.n
            row.pending_ids, row.pending_features = [], None
            row.generated, row.hidden, row.decoding = [], [], True
        return logits

    def _decode(self, logits: torch.Tensor) -> None:
        w = self.writer
        max_new = w.settings.sampling.max_new_tokens
        ids = w.image_ids
        while True:
            active = [i for i, row in enumerate(self.rows) if row.decoding]
            if not active:
                return
            if w.chooser is not None:
                tokens = w.chooser(logits[active], [self.rows[i].generated for i in active])
            else:
                generators = [self.rows[i].generator for i in active]
                tokens = choose_tokens(logits[active], ids, w.settings.sampling, generators)
            chunks: list[list[int]] = [[] for _ in self.rows]
            for i, token in zip(active, tokens, strict=True):
                row = self.rows[i]
                if token == w.eos_id:
                    row.decoding = False
                    continue
                # The rest of a picture is forced, so it is fed in the same forward.
                chunk = [token, *forced_continuation(token, ids)]
                chunks[i] = chunk[: max_new - len(row.generated)]
            if not any(chunks):
                return
            logits, hidden, _ = w.forward(self.kv, chunks, None)
            for i, chunk in enumerate(chunks):
                if not chunk:
                    continue
                row = self.rows[i]
                row.generated += chunk
                row.hidden.append(hidden[i, hidden.shape[1] - len(chunk) :])
                row.layout.n += len(chunk)
                self.stories[row.story].peak_kv_tokens = max(self.stories[row.story].peak_kv_tokens, row.layout.n)
                if len(row.generated) >= max_new:
                    row.decoding = False

    def _regress(self) -> dict[int, torch.Tensor]:
        """Features of each story's last generated picture: its image tokens' hidden states, resampled."""
        n = self.writer.mllm.num_image_tokens
        eoi = self.writer.image_ids.eoi
        picked, owners = [], []
        for row in self.rows:
            if eoi not in row.generated:
                continue
            last = len(row.generated) - 1 - row.generated[::-1].index(eoi)
            if last < n:
                continue  # fewer than n tokens before </img>: not a picture
            picked.append(torch.cat(row.hidden)[last - n : last])
            owners.append(id(row))
        if not picked:
            return {}
        features = self.writer.mllm.regress_image_features(torch.stack(picked))
        return dict(zip(owners, features, strict=True))

    def _next_prompt(self, row: _Row, text: str, finished: int) -> list[int]:
        """Prompt after step ``finished`` (1-based): its text (write mode) and its picture as context."""
        w = self.writer
        if row.request.mode == "write":
            return w.encode(text + w.image_text)
        return w.encode(w.image_text + w.separator + row.request.texts[finished])

    def _replayed_text(self, row: _Row, finished: int) -> tuple[list[int], list[int]]:
        """Split the prompt after resumed step ``finished`` into the text tokens decoding would have left in
        the cache (fed in the same round as the previous prompt, before any eviction, as when written) and
        the rest (its picture, fed next round)."""
        step = row.replay[0]
        next_ids = self._next_prompt(row, step.text, finished)
        boi = next_ids.index(self.writer.image_ids.boi)
        keep = boi if step.token_ids is None else _common_prefix(step.token_ids, next_ids, limit=boi)
        return next_ids[:keep], next_ids[keep:]

    def _replay_step(self, row: _Row) -> WrittenStep | None:
        """Queue the rest of a resumed step as the row's prompt, exactly as if it had just been written."""
        finished = row.offset - len(row.replay) + 1
        row.pending_features = row.replay.pop(0).features.unsqueeze(0)
        row.pending_ids = row.replay_rest
        if row.replay:
            kept, row.replay_rest = self._replayed_text(row, finished + 1)
            row.pending_ids = row.pending_ids + kept
        return None

    def _finish_step(self, row: _Row, features: torch.Tensor | None, seconds: float) -> WrittenStep | None:
        w = self.writer
        request = row.request
        done = row.offset + len(self.stories[row.story].steps)
        decode_start = row.layout.n - len(row.generated)
        if features is None:
            row.stop = (
                "max_new_tokens" if len(row.generated) >= w.settings.sampling.max_new_tokens else "eos_without_image"
            )
            return None
        generated_text = clean_text(w.tokenizer.decode(row.generated, skip_special_tokens=False))
        text = generated_text if request.mode == "write" else request.texts[done]
        step = WrittenStep(
            index=done + 1,
            text=text,
            features=features.detach().float().cpu(),
            token_ids=list(row.generated),
            prompt_tokens=row.prompt_tokens,
            kv_tokens=row.kv_tokens,
            seconds=seconds,
            generator_state=None if row.generator is None else row.generator.get_state(),
        )
        self.stories[row.story].steps.append(step)
        if done + 1 >= request.num_steps:
            row.stop = "steps"
            return step
        # The next prompt: this step's picture as context (regressed features, never re-encoded) ...
        next_ids = self._next_prompt(row, generated_text, done + 1)
        # ... of which the text tokens identical to what was just generated keep their cache entries (the
        # picture itself must be prefilled again: as context its slots hold features, not token embeddings).
        keep = _common_prefix(row.generated, next_ids, limit=next_ids.index(w.image_ids.boi))
        self.kv.truncate_row(self.rows.index(row), decode_start + keep)
        row.layout.n = decode_start + keep
        row.pending_ids = next_ids[keep:]
        row.pending_features = features.unsqueeze(0)
        return step


def _common_prefix(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    n = 0
    for x, y in zip(a[:limit], b[:limit], strict=False):
        if x != y:
            break
        n += 1
    return n


class StoryWriter:
    """Writes stories with the MLLM alone: text + regressed features per step, for B stories at once.

    LoRA is merged into the base weights in place for speed (``mllm.llm.unmerge_adapter()`` undoes it).
    ``chooser`` replaces the decoding rule (image-token rule + greedy/sampling) with your own, e.g. to script
    fixed-length steps when benchmarking random weights.

    Example::

        writer = StoryWriter(mllm, tokenizer)
        [story] = writer.write([StoryRequest("A fox wakes up.", vit_features[0], num_steps=25)])
        story.steps[3].text, story.steps[3].features.shape  # '...', (256, 4096)
    """

    def __init__(
        self,
        mllm: SeedStoryMLLM,
        tokenizer: PreTrainedTokenizerBase,
        settings: WriterSettings | None = None,
        *,
        chooser: TokenChooser | None = None,
    ) -> None:
        self.mllm = mllm
        self.chooser = chooser
        self.tokenizer = tokenizer
        self.settings = settings or WriterSettings()
        self.image_ids = ImageTokenIds.from_tokenizer(tokenizer, mllm.num_image_tokens)
        merge_lora_for_inference(mllm)
        self.decoder = LlamaDecoder(mllm)
        self.image_text = image_string(mllm.num_image_tokens)
        self.eos_id, self.pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        self.separator = INST if self.settings.inst_separator else ""

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def session(self, requests: Sequence[StoryRequest]) -> WritingSession:
        return WritingSession(self, requests)

    def write(
        self,
        requests: Sequence[StoryRequest],
        on_step: Callable[[int, WrittenStep], None] | None = None,
    ) -> list[WrittenStory]:
        """Write every story to the end; ``on_step(story_index, step)`` is called as steps complete."""
        session = self.session(requests)
        while not session.done:
            for story, step in session.step():
                if on_step is not None:
                    on_step(story, step)
        return session.stories

    def forward(
        self, kv: StoryKV, chunks: Sequence[Sequence[int]], features: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Append one chunk of tokens per row (right-aligned, padded on the left) to the cache.

        ``features`` (N, T, D) are the context pictures inside the chunks, in row-major order. Returns the
        next-token logits of each row's last token (B, V), the post-norm hidden states (B, w, D) and the
        validity mask (B, w).
        """
        width = max(1, *(len(c) for c in chunks))
        pad = self.pad_id
        ids = torch.full((len(chunks), width), pad, dtype=torch.long)
        valid = torch.zeros(len(chunks), width, dtype=torch.bool)
        for i, chunk in enumerate(chunks):
            if chunk:
                ids[i, width - len(chunk) :] = torch.tensor(chunk)
                valid[i, width - len(chunk) :] = True
        ids, valid = ids.to(kv.device), valid.to(kv.device)
        slots = image_slot_mask(ids, self.image_ids) & valid if features is not None else None
        if features is not None:
            features = features.to(device=kv.device, dtype=self.mllm.lm_head.weight.dtype)
        hidden = self.decoder(self.mllm.embed_inputs(ids, features, slots), kv, valid)
        return self.mllm.lm_head(hidden[:, -1]), hidden, valid
