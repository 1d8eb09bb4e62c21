"""The synthetic worlds: stories generated with their ground truth known, to train small models and judge them.

The story world is a generator of illustrated stories (characters in slots, scenes, art styles) written in the
StoryStream layout, and a judge that reads its pictures and captions back; SEED-Story-Mini is trained and scored
on it. The toy world is smaller still: captions and synthetic ViT features, no pixels, on which the toy model
learns in seconds to write well-formed stories for the engine's tests and benchmarks.

    spec.py       the story world's fixed definition: cast, scenes, styles, layout, palettes, FrameTruth
    plot.py       what happens, frame by frame (one event per frame)
    text.py       captions that always follow the pictures
    draw.py       a frame's picture from its ground truth
    world.py      StoryWorld (a story is a pure function of seed and index) and its StoryStream writer
    judge/        read pictures and captions back, score stories and runs, baselines and probes of a model
    toy.py        the toy world and its training batches
"""
