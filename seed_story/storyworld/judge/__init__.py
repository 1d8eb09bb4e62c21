"""The story-world judge: read pictures back (scene, style, who is where), parse captions, score stories.

Built for the synthetic world of ``seed_story.data.storyworld``, whose ground truth is known, so that a small
model trained on it can be scored automatically on character and style consistency, text-image agreement
and text coherence (definitions in ``seed_story.eval.metrics``).

Example::

    from seed_story.eval import detect_frame, judge_story
    detect_frame(image).slots                  # ("Pip", None, "Momo")
    judge_story(zip(captions, images)).character_consistency.value
"""

from seed_story.eval.captions import CaptionMentions, parse_caption
from seed_story.eval.detect import FrameDetection, detect_frame
from seed_story.eval.metrics import METRICS, Ratio, Scores, judge_story, score_story
from seed_story.eval.report import EvalReport, evaluate_run

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
