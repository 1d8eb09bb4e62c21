"""A WeasyPrint URL fetcher that only reads files inside one folder (the book's own)."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from weasyprint.urls import URLFetcher, URLFetcherResponse


class OutsideBookError(ValueError):
    """Raised for any URL that is not a file inside the book's folder."""


class BookFetcher(URLFetcher):
    """Serves ``file:`` URLs under ``root`` and refuses everything else (http, data outside, ``/etc/passwd``).

    Refused URLs are kept in ``refused`` so callers and tests can see what a template tried to reach; WeasyPrint
    turns the refusal into a logged warning and renders the rest of the book.

    Example::

        fetcher = BookFetcher(story_dir)
        HTML(string=html, base_url=story_dir.as_uri() + "/", url_fetcher=fetcher).write_pdf("book.pdf")
        assert not fetcher.refused
    """

    def __init__(self, root: Path) -> None:
        super().__init__(allowed_protocols=("file",))
        self.root = Path(root).resolve()
        self.refused: list[str] = []
        self.served: list[str] = []

    def fetch(self, url: str, headers: dict | None = None) -> URLFetcherResponse:
        path = self._local_path(url)
        if path is None:
            self.refused.append(url)
            raise OutsideBookError(f"refusing to fetch {url!r}: only files inside {self.root} are allowed")
        self.served.append(url)
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": mime})

    def _local_path(self, url: str) -> Path | None:
        parts = urlsplit(url)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            return None
        # resolve() follows symlinks and "..", so a link pointing out of the folder is refused too.
        path = Path(url2pathname(unquote(parts.path))).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            return None
        return path
