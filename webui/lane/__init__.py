"""The GPU lane: every pipeline call of a process, one at a time, on one thread.

`worker.py` is the thread and its bookkeeping; `packing.py` decides what goes into each call;
`calls.py` is the torch work of a call; `watchdog.py` notices a call that stalls; `work.py`
holds the data they share.
"""

from webui.lane.calls import CallShape, to_pixels
from webui.lane.kinds import Start
from webui.lane.work import (
    CAPTION_MULTIPLE,
    CallStats,
    Job,
    LaneError,
    OutOfMemory,
    Progress,
    Stalled,
    WorkItem,
)
from webui.lane.worker import MASKLESS_BACKENDS, Lane

__all__ = [
    "CAPTION_MULTIPLE",
    "MASKLESS_BACKENDS",
    "CallShape",
    "CallStats",
    "Job",
    "Lane",
    "LaneError",
    "OutOfMemory",
    "Progress",
    "Stalled",
    "Start",
    "WorkItem",
    "to_pixels",
]
