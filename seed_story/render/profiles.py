"""Named print profiles: where a book goes decides its trim, bleed, colour, PDF standard and page-count rules.

* ``screen``: reading on a device or a home printer. RGB, no bleed, tagged PDF/UA-1 (accessible).
* ``kdp``: Amazon KDP paperback. 8.5 x 8.5 in trim, 0.125 in bleed, CMYK PDF/X-1a, art at 300 PPI, at least
  24 pages, an even count.
* ``ingramspark``: IngramSpark. The same trim and bleed, CMYK PDF/X-4, 300 PPI, at least 18 pages, an even
  count.

The page minimums and PPI are the platforms' published rules as of this writing; a platform that changes
them needs only a new preset or ``PrintSettings`` of its own (every field can be set directly).

Example::

    settings = print_profile("kdp")
    write_book_pdf(record, story_dir, settings).preflight.passed
"""

from __future__ import annotations

from seed_story.render.pdf import PageSize, PrintSettings

PROFILES: dict[str, PrintSettings] = {
    "screen": PrintSettings(profile="screen", page_size=PageSize.square, bleed_in=0.0, pdf_variant="pdf/ua-1"),
    "kdp": PrintSettings(profile="kdp", page_size=PageSize.square, bleed_in=0.125, pdf_variant="pdf/x-1a",
                         colour="cmyk", upscale_dpi=300, min_ppi=300, min_pages=24, page_multiple=2),
    "ingramspark": PrintSettings(profile="ingramspark", page_size=PageSize.square, bleed_in=0.125,
                                 pdf_variant="pdf/x-4", colour="cmyk", upscale_dpi=300, min_ppi=300, min_pages=18,
                                 page_multiple=2),
}  # fmt: skip


def print_profile(name: str, **changes: object) -> PrintSettings:
    """The preset ``name`` (``screen``, ``kdp``, ``ingramspark``), with ``changes`` applied on top."""
    if name not in PROFILES:
        raise ValueError(f"unknown print profile {name!r}; choose from {sorted(PROFILES)}")
    preset = PROFILES[name]
    return PrintSettings.model_validate({**preset.model_dump(), **changes}) if changes else preset
