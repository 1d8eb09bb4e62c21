"""StoryStream data: ingestion into Parquet shards, the interleaved sequence builder, a streaming dataset.

Example::

    from seed_story.data.storystream import ingest_storystream
    report = ingest_storystream(["data/george/train.jsonl"], "data/image/george_full", "shards/george")
    report.chunks_written, report.problems[:3]
"""
