"""The story-world judge: read pictures back (scene, style, who is where), parse captions, score stories.

Built for the synthetic world of ``seed_story.storyworld.world``, whose ground truth is known, so that a small
model trained on it can be scored automatically on character and style consistency, text-image agreement
and text coherence (definitions in ``metrics``). ``report`` judges a stored run; ``baselines`` and ``probes``
measure a model against reference conditions and inside its MLLM.

Example::

    from seed_story.storyworld.judge import detect_frame, judge_story
    detect_frame(image).slots                  # ("Pip", None, "Momo")
    judge_story(zip(captions, images)).character_consistency.value
"""

from seed_story.storyworld.judge.captions import CaptionMentions, parse_caption
from seed_story.storyworld.judge.detect import FrameDetection, detect_frame
from seed_story.storyworld.judge.metrics import METRICS, Ratio, Scores, judge_story, score_story
from seed_story.storyworld.judge.report import EvalReport, evaluate_run

__all__ = [
    "METRICS",
    "CaptionMentions",
    "EvalReport",
    "FrameDetection",
    "Ratio",
    "Scores",
    "detect_frame",
    "evaluate_run",
    "judge_story",
    "parse_caption",
    "score_story",
]
