"""SEED-Story: illustrated long stories with a multimodal LLM, as a library."""

import logging

# diffusers' SDXL pipeline imports transformers' CLIP image processors, which warn that torchvision is
# absent. We never use them (images go through seed_story's own transform), so the warning is noise.
logging.getLogger("transformers.utils.import_utils").setLevel(logging.ERROR)

__version__ = "0.1.0"
