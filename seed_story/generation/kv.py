"""A batched KV cache for stories that grow, roll back and evict independently of each other.

Per layer, keys and values live in preallocated buffers (B, kv_heads, capacity, head_dim) that grow by
doubling, so appending a token copies nothing but the token. Beside them, per slot: whether it holds a
real token of its row and that token's RoPE position. Rows advance in lockstep (one forward for all
stories) but each has its own positions, holes (padding, rolled-back tokens) and evictions, so every
forward gets an explicit mask rather than a shared causal layout.
"""

from __future__ import annotations

import torch

from seed_story.generation.rope import Rope


class StoryKV:
    """KV cache + per-slot validity and positions for B stories.

    Example::

        kv = StoryKV(num_layers=32, kv_heads=32, head_dim=128, batch_size=4, device="cuda",
                     dtype=torch.float16, rope=Rope.from_model(model))
        positions, mask = kv.prepare(valid)      # valid: (B, w) bool, the new chunk's real tokens
        ...                                      # each layer: keys, values = kv.append(i, k, v)
        kv.commit(valid, positions)
    """

    def __init__(
        self,
        *,
        num_layers: int,
        kv_heads: int,
        head_dim: int,
        batch_size: int,
        device: torch.device | str,
        dtype: torch.dtype,
        rope: Rope,
        capacity: int = 256,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.rope = rope
        self.shape = (kv_heads, head_dim)
        self.num_layers = num_layers
        self.length = 0
        self._alloc(batch_size, capacity)
        self.next_pos = torch.zeros(batch_size, dtype=torch.long, device=self.device)

    def _alloc(self, batch_size: int, capacity: int) -> None:
        h, d = self.shape
        kw = {"device": self.device, "dtype": self.dtype}
        self.keys = [torch.zeros(batch_size, h, capacity, d, **kw) for _ in range(self.num_layers)]
        self.values = [torch.zeros(batch_size, h, capacity, d, **kw) for _ in range(self.num_layers)]
        self._valid = torch.zeros(batch_size, capacity, dtype=torch.bool, device=self.device)
        self._pos = torch.zeros(batch_size, capacity, dtype=torch.long, device=self.device)

    @property
    def batch_size(self) -> int:
        return self._valid.shape[0]

    @property
    def capacity(self) -> int:
        return self._valid.shape[1]

    @property
    def valid(self) -> torch.Tensor:
        """(B, length) whether each slot holds a real token."""
        return self._valid[:, : self.length]

    @property
    def pos(self) -> torch.Tensor:
        """(B, length) RoPE position of each slot (0 where not valid)."""
        return self._pos[:, : self.length]

    def valid_counts(self) -> torch.Tensor:
        return self.valid.sum(dim=1)

    def _grow(self, needed: int) -> None:
        capacity = self.capacity
        while capacity < needed:
            capacity *= 2
        old = (self.keys, self.values, self._valid, self._pos)
        self._alloc(self.batch_size, capacity)
        n = self.length
        for new, prev in zip(self.keys + self.values, old[0] + old[1], strict=True):
            new[:, :, :n] = prev[:, :, :n]
        self._valid[:, :n] = old[2][:, :n]
        self._pos[:, :n] = old[3][:, :n]

    # -- one forward ----------------------------------------------------------------------------------
    def prepare(self, new_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (B, w) and boolean mask (B, 1, w, L + w) for appending a chunk of w slots.

        A real token sees every earlier real token of its row; a padding slot sees only itself, so no
        attention row is empty (an empty row would give NaN and poison the cache).
        """
        new_valid = new_valid.to(self.device)
        w = new_valid.shape[1]
        if self.length + w > self.capacity:
            self._grow(self.length + w)
        positions = self.next_pos[:, None] + new_valid.long().cumsum(dim=1) - 1
        positions = positions * new_valid
        end = self.length + w
        self._valid[:, self.length : end] = new_valid
        keys_valid = self._valid[:, :end]
        if w == 1:
            mask = keys_valid[:, None, None, :].clone()
            mask[:, 0, 0, -1] = True
            return positions, mask
        causal = torch.ones(w, end, dtype=torch.bool, device=self.device).tril(diagonal=self.length)
        mask = causal[None] & keys_valid[:, None, :] & new_valid[:, :, None]
        diagonal = torch.arange(w, device=self.device)
        mask[:, diagonal, self.length + diagonal] = True
        return positions, mask[:, None]

    def append(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write one layer's new keys/values (B, h, w, d) after the cache; return the whole (B, h, L + w, d)."""
        end = self.length + keys.shape[2]
        self.keys[layer][:, :, self.length : end] = keys
        self.values[layer][:, :, self.length : end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def commit(self, new_valid: torch.Tensor, positions: torch.Tensor) -> None:
        """Record the chunk every layer has just appended."""
        w = new_valid.shape[1]
        self._pos[:, self.length : self.length + w] = positions
        self.length += w
        self.next_pos = self.next_pos + new_valid.to(self.device).sum(dim=1)

    # -- rollback and compaction ----------------------------------------------------------------------
    def row_slots(self, row: int) -> torch.Tensor:
        """Slot indices of a row's real tokens, in position order."""
        return self.valid[row].nonzero().flatten()

    def truncate_row(self, row: int, keep_tokens: int) -> None:
        """Forget all but the first ``keep_tokens`` real tokens of a row (their slots become holes)."""
        slots = self.row_slots(row)
        self._valid[row, slots[keep_tokens:]] = False
        self.next_pos[row] = min(keep_tokens, len(slots))

    def select(self, rows: list[int], keep: list[torch.Tensor]) -> None:
        """Rebuild the cache with new row i = old row ``rows[i]`` holding only the slots ``keep[i]``.

        ``keep[i]`` lists slot indices in position order. Kept tokens get positions 0..n-1 and their keys
        are rotated from the old positions to the new ones, so after an eviction the story looks as if the
        kept tokens had been encoded contiguously (and positions stay within the cache size). Holes left by
        padding and rollbacks disappear; rows can be dropped (finished stories) or reordered.
        """
        if rows == list(range(self.batch_size)) and all(len(k) == self.length for k in keep):
            return  # every slot of every row stays where it is
        n_new = max((len(k) for k in keep), default=0)
        b = len(rows)
        index = torch.zeros(b, n_new, dtype=torch.long, device=self.device)
        valid = torch.zeros(b, n_new, dtype=torch.bool, device=self.device)
        for i, slots in enumerate(keep):
            index[i, : len(slots)] = slots.to(self.device)
            valid[i, : len(slots)] = True
        row_index = torch.tensor(rows, dtype=torch.long, device=self.device)
        old_pos = self._pos[row_index].gather(1, index)
        new_pos = torch.arange(n_new, device=self.device).expand(b, -1) * valid
        delta = (new_pos - old_pos) * valid
        rotate = bool((delta != 0).any())
        keys = [k[row_index].gather(2, self._expand(index, k)) for k in self.keys]
        values = [v[row_index].gather(2, self._expand(index, v)) for v in self.values]
        if rotate:
            keys = [self.rope.rotate(k, delta) for k in keys]
        self._alloc(b, max(self.capacity, 1))
        for layer in range(self.num_layers):
            self.keys[layer][:, :, :n_new] = keys[layer]
            self.values[layer][:, :, :n_new] = values[layer]
        self._valid[:, :n_new] = valid
        self._pos[:, :n_new] = new_pos
        self.length = n_new
        self.next_pos = valid.sum(dim=1)

    @staticmethod
    def _expand(index: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        return index[:, None, :, None].expand(-1, buffer.shape[1], -1, buffer.shape[3])
