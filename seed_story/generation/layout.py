"""Where a story's tokens sit in its KV cache, and which ones survive an eviction (the attention sink).

Positions here are a row's real tokens in order, 0..n-1 (the cache keeps them contiguous). The cache is
``[sink pieces][window]``: the window holds whole steps, each ending with a picture ``<img> .. </img>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seed_story.generation.settings import SinkSettings


@dataclass
class RowLayout:
    """Token layout of one story's cache: ``[start tokens][picture pieces][window]``."""

    n: int = 0
    start_tokens: int = 0
    pieces: list[int] = field(default_factory=list)  # sink piece lengths: opening picture's first
    images: list[tuple[int, int]] = field(default_factory=list)  # (<img>, </img>) positions in the window
    evictions: int = 0

    @property
    def window_start(self) -> int:
        return self.start_tokens + sum(self.pieces)

    def append(self, n_tokens: int, image_starts: list[int], image_tokens: int) -> None:
        """Record ``n_tokens`` new tokens; ``image_starts`` are ``<img>`` offsets within them."""
        for offset in image_starts:
            boi = self.n + offset
            self.images.append((boi, boi + image_tokens + 1))
        self.n += n_tokens

    def evict_oldest(self, sink: SinkSettings) -> list[int]:
        """Evict the oldest step of the window; return the positions to keep (ascending) and update.

        The step spans from the window start through its picture's ``</img>``. With the sink enabled, its
        start tokens (first eviction only) and the head and tail of its picture move to the sink; with the
        sink disabled only the story's first token (BOS) is kept, which is a plain sliding window.
        """
        if not self.images:
            raise ValueError("nothing to evict: no picture in the window")
        boi, eoi = self.images[0]
        window = self.window_start
        n_start = 0
        if self.evictions == 0:
            n_start = min(sink.start_tokens, eoi + 1) if sink.enabled else 1
        keep = list(range(window))
        piece: list[int] = []
        if sink.enabled:
            lowest = window + n_start
            head = range(max(lowest, boi - sink.head_context), min(eoi + 1, boi + sink.head_tokens))
            tail = range(max(lowest, eoi - sink.tail_tokens + 1), eoi + 1)
            piece = sorted(set(head) | set(tail))
            if len(self.pieces) >= sink.max_sink_images:
                if sink.max_sink_images == 1:
                    piece = []  # only the opening picture's piece is ever kept
                else:
                    # Drop the oldest piece after the opening picture's: the opening sets the characters.
                    first_end = self.start_tokens + self.pieces[0]
                    dropped = self.pieces.pop(1)
                    keep = [p for p in keep if not first_end <= p < first_end + dropped]
        keep += list(range(window, window + n_start)) + piece + list(range(eoi + 1, self.n))
        self.start_tokens += n_start
        if piece:
            self.pieces.append(len(piece))
        rank = {p: i for i, p in enumerate(keep)}
        self.images = [(rank[b], rank[e]) for b, e in self.images[1:]]
        self.n = len(keep)
        self.evictions += 1
        return keep
