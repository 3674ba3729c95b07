"""Which images go into the next pipeline call: the lane's packing policy, as plain data.

The oldest job with work sets the call's kind (size, steps, guidance, negative prompt); every
waiting job of that kind then gives one image in turn, oldest first, until the call is full.
So a one-image job that arrives behind a 100-image one gets into the very next call, and no
job waits for all of another. With a mask-free attention backend every image of a call must
also share the caption bucket of the oldest job's next image (captions pad to multiples of
32 tokens, and different lengths in one call need an attention mask).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """One job's images still to make, as the policy sees them."""

    key: Hashable  # jobs with equal keys may share a call
    buckets: Sequence[int]  # the caption bucket of each waiting image, in the job's order


def next_call(
    waiting: Sequence[Waiting], limit: int, cross_batching: bool, one_bucket: bool
) -> list[tuple[int, int]]:
    """The next call's images as (job position, image position) pairs, in call order.

    `waiting` is in arrival order; an empty list means nothing is waiting.
    """
    head = next((n for n, job in enumerate(waiting) if job.buckets), None)
    if head is None:
        return []
    key, bucket = waiting[head].key, waiting[head].buckets[0]
    peers = (
        [n for n, job in enumerate(waiting) if job.buckets and job.key == key] if cross_batching else [head]
    )
    # Per peer: the positions it can give to this call, in its own order.
    offers = {
        n: [i for i, b in enumerate(waiting[n].buckets) if not one_bucket or b == bucket] for n in peers
    }
    picks: list[tuple[int, int]] = []
    while len(picks) < limit and any(offers.values()):
        for n in peers:
            if len(picks) == limit:
                break
            if offers[n]:
                picks.append((n, offers[n].pop(0)))
    return picks
