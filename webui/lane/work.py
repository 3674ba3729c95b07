"""What the lane works on: jobs of images, their progress, and the lane's own record."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from webui.lane.calls import CallShape
from webui.lane.kinds import Start
from webui.request import TEXT

CAPTION_MULTIPLE = 32  # captions pad to multiples of this many tokens
RECENT_CALLS = 16  # calls the speed estimate looks back on
RECENT_GAPS = 64  # gaps between calls the idle-gap figures look back on


@dataclass(frozen=True)
class WorkItem:
    """One image to make."""

    index: int  # the caller's number for it
    prompt: str  # the text the model reads
    seed: int
    caption_bucket: int  # padded caption length / 32, for mask-free batching
    start: Start | None = field(default=None, compare=False)  # what it starts from, if not text


@dataclass(frozen=True)
class Progress:
    """Where a job stands, reported after every denoising step of a call it is in."""

    step: int  # steps finished in the running call, 1..steps
    steps: int
    images_done: int  # the job's images finished before the running call
    chunk_images: int  # the job's images in the running call
    images_total: int

    @property
    def fraction(self) -> float:
        done = self.images_done * self.steps + self.chunk_images * self.step
        return done / (self.images_total * self.steps)


@dataclass(eq=False)
class Job:
    """A job as the lane sees it. The engine creates it, waits on `done`, then on `saves`."""

    request_id: str
    items: list[WorkItem]
    shape: CallShape
    on_image: Callable[[WorkItem, Image.Image], Any]  # runs on a saver thread
    cancel: threading.Event
    on_step: Callable[[Progress], None] | None = None  # runs on the lane's thread
    on_start: Callable[[], None] | None = None  # once, on the lane's thread, before its first call
    pending: deque[WorkItem] = field(init=False)
    forwarded: int = field(default=0, init=False)  # images whose call has finished
    in_flight: int = field(default=0, init=False)
    saves: list[Future] = field(default_factory=list, init=False)
    error: BaseException | None = field(default=None, init=False)
    black: list[int] = field(default_factory=list, init=False)  # indexes of all-black images
    done: threading.Event = field(default_factory=threading.Event, init=False)  # no more calls
    started: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.pending = deque(self.items)

    @property
    def key(self) -> tuple:
        """Jobs with equal keys can share a pipeline call."""
        s = self.shape
        return (
            s.kind,
            s.width,
            s.height,
            s.steps,
            s.strength if s.kind != TEXT else 1.0,
            s.guidance_scale,
            s.negative_prompt if s.guidance_scale > 0 else "",
            s.loras,  # images of different LoRA sets never share a call
        )

    @property
    def stopped(self) -> bool:
        return self.cancel.is_set()


@dataclass(frozen=True)
class LoggedCall:
    """One pipeline call the lane made: when (the monotonic clock) and for whom."""

    started: float
    ended: float
    served: tuple[tuple[str, int], ...]  # (request id, images in this call), in batch order


@dataclass
class CallStats:
    """What the lane has done since it started, for /healthz, ETAs and the benchmark."""

    calls: int = 0
    images: int = 0
    busy_s: float = 0.0  # inside pipeline calls
    recent: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT_CALLS))  # (units, s)
    # Between two calls while work waited: (seconds of our own Python from the end of one call to
    # the next call's start, seconds encoding the next call's new prompts). Nothing else of the
    # GPU's runs then: PNG encoding and saving are on the saver threads.
    gaps: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=RECENT_GAPS))
    log: deque[LoggedCall] = field(default_factory=lambda: deque(maxlen=RECENT_GAPS))  # oldest first
    # Called on the lane's thread after each finished call: (shape, images, seconds, the idle gap
    # before it in seconds or None); the metrics observe calls through it.
    observers: list[Callable[[Any, int, float, float | None], None]] = field(default_factory=list)

    def gap_summary(self) -> dict[str, float | int]:
        """Recent idle gaps between back-to-back calls, in milliseconds (median and worst)."""
        gaps = list(self.gaps)  # the lane's thread appends meanwhile
        if not gaps:
            return {"n": 0}
        between, encode = sorted(g for g, _ in gaps), sorted(e for _, e in gaps)
        total = sorted(g + e for g, e in gaps)
        ms = lambda values, q: round(1000 * values[int(q * (len(values) - 1))], 2)  # noqa: E731
        return {
            "n": len(total),
            "p50_ms": ms(total, 0.5),
            "max_ms": ms(total, 1.0),
            "between_calls_p50_ms": ms(between, 0.5),
            "prompt_encoding_p50_ms": ms(encode, 0.5),
        }

    def seconds_per_unit(self) -> float | None:
        """Recent seconds per unit of work (pixels x steps of one image); None before any call."""
        units = sum(u for u, _ in self.recent)
        return sum(s for _, s in self.recent) / units if units else None


class LaneError(RuntimeError):
    """A failure of the lane itself, with a message for the user."""


class OutOfMemory(LaneError):
    """Even a call of one image ran out of memory; the message says what to lower."""


class Stalled(LaneError):
    """The running call stopped making progress; every job in the lane gets this."""
