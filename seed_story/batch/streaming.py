"""Drawing while writing: each step's picture is drawn as soon as the writer has stored the step.

The writer and the drawer are separate networks (:class:`~seed_story.batch.pipelines.LoadedModel` gives each half a
lock of its own), so a thread can draw a micro-batch's stored steps while the writer goes on with its next ones:
on a GPU the drawer's work fills the gaps of the launch-bound one-token decode, on two GPUs the halves run side by
side, on a CPU the drawing uses the cores the writer leaves idle. Pictures come out in the same chunks, in the same
order (:func:`~seed_story.batch.drawing.draw_order`), as drawing after writing would give: the same pictures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from seed_story.batch.drawing import DrawItem, DrawReport, draw_items, draw_key
from seed_story.batch.pipelines import LoadedModel
from seed_story.batch.writing import WriteReport, write_stories
from seed_story.generation.settings import InputLimits
from seed_story.runstore.records import StoryPlan
from seed_story.storage import ObjectStore


class DrawAlongside:
    """A drawing thread fed by the writer: :meth:`stored` queues a committed step; whenever ``chunk`` pictures are
    waiting (or, at the end, fewer) they are drawn with :func:`~seed_story.batch.drawing.draw_items` under the
    drawer half's lock. Leaving the ``with`` block waits for every queued picture; leaving it on an error waits only
    for the chunk being drawn (the rest stay pending in the store, drawn by the flow's next stage or next try).

    Example::

        with DrawAlongside(store, model, plans, attempt, chunk=16) as drawer:
            write_stories(store, plans, pipeline, attempt, on_stored=drawer.stored)
        drawer.report  # DrawReport: pictures drawn, stories whose drawing failed
    """

    def __init__(
        self,
        store: ObjectStore,
        model: LoadedModel,
        plans: list[StoryPlan],
        attempt: str,
        chunk: int,
        on_drawn: Callable[[int], None] | None = None,
    ) -> None:
        self.store, self.model, self.attempt, self.chunk, self.on_drawn = store, model, attempt, chunk, on_drawn
        self._key = draw_key(plans)
        self.report = DrawReport()
        self._waiting: list[DrawItem] = []
        self._done_writing = False
        self._abandoned = False  # writing failed: the undrawn steps stay pending in the store for the next try
        self._error: BaseException | None = None
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="draw-alongside", daemon=True)

    def __enter__(self) -> DrawAlongside:
        self._thread.start()
        return self

    def stored(self, plan: StoryPlan, step: int) -> None:
        """The writer's hook: ``plan``'s ``step`` is committed to the store."""
        with self._wake:
            self._waiting.append(DrawItem.of(plan, step))
            self._wake.notify()

    def _next_chunk(self) -> list[DrawItem] | None:
        with self._wake:
            self._wake.wait_for(lambda: len(self._waiting) >= self.chunk or self._done_writing)
            if not self._waiting or self._abandoned:
                return None
            # The writer stores a micro-batch's steps in draw order already; sorting keeps that true across the
            # batches of a story-by-story retry.
            self._waiting.sort(key=self._key)
            chunk, self._waiting = self._waiting[: self.chunk], self._waiting[self.chunk :]
            return chunk

    def _run(self) -> None:
        try:
            while (chunk := self._next_chunk()) is not None:
                with self.model.use("drawer") as pipeline:
                    drawn = draw_items(self.store, chunk, pipeline, self.attempt)
                self.report.drawn += drawn.drawn
                self.report.failures += drawn.failures
                if self.on_drawn is not None:
                    self.on_drawn(drawn.drawn)
        except BaseException as err:  # a storage error: raised in the task, which retries it
            self._error = err

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        with self._wake:
            self._done_writing = True
            self._abandoned = err is not None
            self._wake.notify()
        self._thread.join()
        if self._error is not None and err is None:
            raise self._error


def write_and_draw(
    store: ObjectStore,
    model: LoadedModel,
    plans: list[StoryPlan],
    attempt: str,
    chunk: int,
    limits: InputLimits | None = None,
    on_drawn: Callable[[int], None] | None = None,
) -> tuple[WriteReport, DrawReport]:
    """Write ``plans`` with the model's writer half; where the model draws while it writes
    (:attr:`~seed_story.batch.pipelines.ModelSpec.draws_while_writing`), draw each stored step alongside in chunks
    of ``chunk``, else leave every picture pending for :func:`~seed_story.batch.drawing.draw_chunks`."""
    if not model.spec.draws_while_writing:
        with model.use("writer") as pipeline:
            return write_stories(store, plans, pipeline, attempt, limits), DrawReport()
    drawer = DrawAlongside(store, model, plans, attempt, chunk, on_drawn=on_drawn)
    with drawer, model.use("writer") as pipeline:
        report = write_stories(store, plans, pipeline, attempt, limits, on_stored=drawer.stored)
    return report, drawer.report
