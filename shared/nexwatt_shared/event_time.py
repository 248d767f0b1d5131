"""A resource's own event clock, robust to an asset whose clock runs ahead.

A resource moves on in event time (its assets' telemetry), not on the wall clock. Taking the
newest interval end among its assets would let one asset whose clock is ahead pull the whole
resource forward: settle its windows early, call every other asset stale. Its clock is instead
the time that most of its assets (half, by default) have reached.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

# Half of the assets: a minority running ahead cannot move the resource's clock.
MOST_ASSETS = 0.5


def resource_clock(ends_s: ArrayLike, share_reached: float = MOST_ASSETS) -> float:
    """The latest time that at least ``share_reached`` of the assets have reached [s].

    Parameters
    ----------
    ends_s : end of each asset's newest telemetry interval [s since the epoch]; NaN = none
        (such assets are left out)
    share_reached : share of the assets that must have reached the clock, in (0, 1]; 1 is the
        oldest asset's time, a small share nears the newest one's

    Returns the clock [s since the epoch], NaN when no asset has telemetry: the k-th newest
    end, k = ceil(``share_reached`` * n) over the n assets with telemetry, so always one of
    the assets' own times. With half, one asset ahead moves the clock only in a resource of
    two, and the clock keeps moving while up to half of the assets are silent. (Settlement
    takes the same in SQL: ``row_number()`` over the ends, newest first.)
    """
    if not 0 < share_reached <= 1:
        raise ValueError("share_reached must lie in (0, 1]")
    ends = np.asarray(ends_s, float)
    ends = np.sort(ends[~np.isnan(ends)])[::-1]
    if ends.size == 0:
        return float("nan")
    return float(ends[max(1, math.ceil(share_reached * ends.size)) - 1])
