"""``sequence.parquet``: a finished story as a table, one row per step (step 0 is the opening)."""

from __future__ import annotations

import pyarrow as pa

SEQUENCE_SCHEMA = pa.schema([
    pa.field("story_id", pa.string(), nullable=False),
    pa.field("step", pa.int32(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("image_key", pa.string(), nullable=False),
    pa.field("feature_key", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("seed", pa.int64(), nullable=False),
    pa.field("settings", pa.string(), nullable=False),  # JSON: writer (sampling, sink) + draw settings
    pa.field("token_count", pa.int32(), nullable=False),
    pa.field("write_seconds", pa.float64(), nullable=False),
    pa.field("draw_seconds", pa.float64(), nullable=False),
    pa.field("attempt", pa.string(), nullable=False),  # the run attempt that wrote the step
])  # fmt: skip
