"""The run store's schema: where each object of a run lives and what it holds.

Batch generation writes a run, rendering and evaluation read it, the flows merge and watch it; they all take the
keys (:mod:`.keys`), the names a record may use (:mod:`.names`) and the typed records (:mod:`.records`) from here,
so the layout is spelled in one place::

    runs/{run_id}/manifests/{file name}          copy of each manifest (or shard) as given
    runs/{run_id}/shards/shard-NN.jsonl          the manifest's shards of a scaled-out run
    runs/{run_id}/summary.json                   RunSummary of the latest attempt
    runs/{run_id}/parts/{part}.summary.json      RunSummary of one shard of a scaled-out run
    runs/{run_id}/index.html                     gallery (renderer)
    runs/{run_id}/storystream.jsonl              finished stories in StoryStream format (export)
    runs/{run_id}/{story_id}/
        story.json                               StoryRecord: written last, marks the story finished
        sequence.parquet                         the story sequence, one row per step (SEQUENCE_SCHEMA)
        opening.png, step_01.png, ...            pictures
        book.html, book.pdf                      storybooks (renderer)
        features/opening.safetensors, features/step_01.safetensors    ViT-space features
        work/request.json                        StoryPlan: the validated row and the settings it runs with
        work/step_01.json                        StepRecord: a written step (after its features)
        work/step_01.drawn.json                  DrawRecord: its picture is stored (after the PNG)
        work/written.json                        WritingDone: the MLLM has finished this story
"""

from seed_story.runstore.keys import RunKeys, StoryKeys, story_id_of
from seed_story.runstore.names import check_image_name, check_safe_name
from seed_story.runstore.records import StoredStep, StoryRecord
from seed_story.runstore.stories import StoryStore

__all__ = [
    "RunKeys",
    "StoredStep",
    "StoryKeys",
    "StoryRecord",
    "StoryStore",
    "check_image_name",
    "check_safe_name",
    "story_id_of",
]
