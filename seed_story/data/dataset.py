"""A streaming dataset of training sequences over Parquet shards, sharded across ranks and workers.

Row groups (see :mod:`seed_story.data.shards`) are the unit of sharding: in each epoch their order is
shuffled with the seed, and consumer ``c = rank * num_workers + worker`` of ``C = world_size * num_workers``
reads row groups ``c, c + C, ...``, its rows in a seeded order. So every chunk is seen once per epoch, by one
consumer, and a consumer never reads another's bytes. Like the reference there is no sample-level buffer.

Exact resume: each sample carries its consumer-local ``position``; the main process passes every batch it
consumes to :meth:`StoryStreamDataset.observe`, saves :meth:`~StoryStreamDataset.state_dict` (per rank) and
later restores it with ``load_state_dict`` before building the ``DataLoader``; the same number of workers
and batch size then produces exactly the batches that had not been consumed, in the same order. Every random
choice (k, row order) is a function of the seed and the position, never of the history.

A one-picture chunk (an image-caption pair) becomes a caption pre-training sample, caption -> picture with
probability ``settings.caption_generation``, else picture -> caption (``build_caption_sample``).

Samples are dropped, never cut or crashed on, when the sequence is ``max_length`` tokens or longer or when the
chunk's last picture fails the reference's size filter (``passes_filter``: it checks the last of the n loaded
pictures only). Each yielded sample's ``meta`` counts the drops before it, so ``observe`` totals them in
``dropped`` (and in the state dict) in the main process.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info
from transformers import PreTrainedTokenizerBase

from seed_story.data.sequence import (
    Sample,
    SequenceSettings,
    TrainBatch,
    build_caption_sample,
    build_sequence,
    passes_filter,
    sample_length,
)
from seed_story.data.shards import ShardStore, as_store, read_row_group, row_groups
from seed_story.data.storystream import StoryChunk
from seed_story.tokenizer import ImageTokenIds


class StoryStreamDataset(IterableDataset):
    """Training samples (:class:`~seed_story.data.sequence.Sample`) from the shards in ``store``.

    ``epochs=None`` cycles for ever (the reference cycles 10000 times); ``shuffle=False`` keeps shard order.

    Example::

        ds = StoryStreamDataset("shards/george", tok, rank=rank, world_size=world, seed=42, epochs=None)
        loader = DataLoader(ds, batch_size=30, num_workers=4, collate_fn=partial(collate, pad_token_id=0))
        for batch in loader:
            ds.observe(batch)          # then ds.state_dict() goes into the checkpoint
    """

    def __init__(
        self,
        store: ShardStore | str | Path | list[str],
        tokenizer: PreTrainedTokenizerBase,
        settings: SequenceSettings | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        epochs: int | None = 1,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
        self.store = as_store(store)
        self.tokenizer = tokenizer
        self.settings = settings or SequenceSettings()
        self.image_ids = ImageTokenIds.from_tokenizer(tokenizer, self.settings.num_image_tokens)
        self.rank, self.world_size, self.seed, self.epochs, self.shuffle = rank, world_size, seed, epochs, shuffle
        self.groups = row_groups(self.store)
        if not self.groups:
            raise ValueError(f"no Parquet shards in {self.store}")
        self.next_positions: dict[int, int] = {}
        self.num_workers: int | None = None
        self.samples_consumed = 0
        self.batches_consumed = 0
        self.dropped = {"too_long": 0, "small_or_odd_picture": 0}

    def _consumer(self) -> tuple[int, int]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if self.num_workers is not None and self.next_positions and num_workers != self.num_workers:
            raise ValueError(
                f"state was saved with {self.num_workers} workers, now {num_workers}: resume needs the same"
            )
        consumers = self.world_size * num_workers
        if len(self.groups) < consumers:
            raise ValueError(f"{len(self.groups)} row groups cannot feed {consumers} consumers; write smaller ones")
        return worker, num_workers

    def _chunks(self, consumer: int, consumers: int, start: int) -> Iterator[tuple[int, StoryChunk]]:
        """(position, chunk) of this consumer's stream from ``start``; skipped row groups are not read."""
        position, epoch = 0, 0
        while self.epochs is None or epoch < self.epochs:
            order = list(range(len(self.groups)))
            if self.shuffle:
                random.Random(f"{self.seed}:{epoch}").shuffle(order)
            for group in order[consumer::consumers]:
                name, index, rows = self.groups[group]
                if position + rows <= start:
                    position += rows
                    continue
                chunks = read_row_group(self.store, name, index)
                if self.shuffle:
                    random.Random(f"{self.seed}:{epoch}:{group}").shuffle(chunks)
                for chunk in chunks:
                    if position >= start:
                        yield position, chunk
                    position += 1
            epoch += 1

    def __iter__(self) -> Iterator[Sample]:
        worker, num_workers = self._consumer()
        # A DataLoader takes batches from workers 0, 1, ... in turn, starting with worker 0 on every new
        # iterator; rotating the roles makes a resumed loader continue exactly where the last one stopped.
        role = (worker + self.batches_consumed) % num_workers
        start = self.next_positions.get(role, 0)
        dropped = dict.fromkeys(self.dropped, 0)  # since the last sample this consumer yielded
        for position, chunk in self._chunks(self.rank * num_workers + role, self.world_size * num_workers, start):
            rng = random.Random(f"{self.seed}:{self.rank}:{role}:{position}")
            pair = len(chunk.captions) == 1  # an image-caption pair: a caption pre-training sample
            k = 1 if pair else sample_length(rng, len(chunk.captions))
            if not passes_filter(Image.open(io.BytesIO(chunk.images[-1])), self.settings):
                dropped["small_or_odd_picture"] += 1
                continue
            images = [Image.open(io.BytesIO(data)) for data in chunk.images[:k]]
            if pair:
                generate = rng.random() < self.settings.caption_generation
                sample = build_caption_sample(
                    self.tokenizer, self.image_ids, chunk.captions[0], images[0], generate, self.settings
                )
            else:
                sample = build_sequence(
                    self.tokenizer, self.image_ids, chunk.captions, images, None, self.settings, length=k
                )
            if sample is None:
                dropped["too_long"] += 1  # dropped, as the reference does
                continue
            sample.meta = {"chunk_id": chunk.chunk_id, "worker": role, "num_workers": num_workers, "position": position}
            sample.meta.update({f"dropped_{key}": count for key, count in dropped.items()})
            dropped = dict.fromkeys(self.dropped, 0)
            yield sample

    def observe(self, batch: TrainBatch) -> None:
        """Record that the training loop consumed ``batch`` (call it in the main process, batch by batch)."""
        self.batches_consumed += 1
        for meta in batch.meta:
            worker, position = int(meta["worker"]), int(meta["position"])
            self.num_workers = int(meta["num_workers"])
            self.next_positions[worker] = max(self.next_positions.get(worker, 0), position + 1)
            self.samples_consumed += 1
            for key in self.dropped:
                self.dropped[key] += int(meta.get(f"dropped_{key}", 0))

    def state_dict(self) -> dict[str, Any]:
        """Where this rank's stream stands: JSON-ready, to save with a checkpoint."""
        return {
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_workers": self.num_workers,
            "samples_consumed": self.samples_consumed,
            "batches_consumed": self.batches_consumed,
            "next_positions": {str(w): p for w, p in sorted(self.next_positions.items())},
            "dropped": dict(self.dropped),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after the samples counted in ``state``; seed, rank and world size must match."""
        for key in ("seed", "rank", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state has {key}={state[key]}, dataset has {getattr(self, key)}")
        self.num_workers = state["num_workers"]
        self.samples_consumed = int(state["samples_consumed"])
        self.batches_consumed = int(state["batches_consumed"])
        self.next_positions = {int(w): int(p) for w, p in state["next_positions"].items()}
        self.dropped.update({k: int(v) for k, v in state.get("dropped", {}).items()})
