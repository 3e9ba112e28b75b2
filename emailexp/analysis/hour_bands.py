"""Local send hour -> hour band, for B2B e-mail.

Bands are half-open ranges of the *local* hour (workspace or experiment timezone), chosen around
a B2B working day rather than equal widths: people triage mail when they arrive, around lunch and
before leaving, and little is read at night.

==========  ========  ===============================================
band        hours     why
==========  ========  ===============================================
night       0 - 6     outside any working day
early       6 - 9     commute / before the working day
morning     9 - 12    first inbox triage of the working day
midday      12 - 14   lunch break
afternoon   14 - 17   main afternoon working block
evening     17 - 20   end of day, commute
late        20 - 24   after hours
==========  ========  ===============================================
"""

from __future__ import annotations

import numpy as np

#: Ordered bands as ``(name, first_hour, end_hour)``; ``end_hour`` is exclusive.
HOUR_BANDS: tuple[tuple[str, int, int], ...] = (
    ("night", 0, 6),
    ("early", 6, 9),
    ("morning", 9, 12),
    ("midday", 12, 14),
    ("afternoon", 14, 17),
    ("evening", 17, 20),
    ("late", 20, 24),
)

#: Band names in chronological order.
HOUR_BAND_NAMES: tuple[str, ...] = tuple(name for name, _, _ in HOUR_BANDS)

_LOOKUP = np.array([name for name, lo, hi in HOUR_BANDS for _ in range(lo, hi)], dtype=object)


def hour_band(hour: int) -> str:
    """Band name for a local hour 0..23 (raises ValueError outside that range)."""
    if isinstance(hour, bool) or int(hour) != hour or not 0 <= hour <= 23:
        raise ValueError(f"hour must be an integer 0..23, got {hour!r}")
    return str(_LOOKUP[int(hour)])


def hour_bands(hours) -> np.ndarray:
    """Vectorised :func:`hour_band` for an array of local hours; returns an object array of names."""
    arr = np.asarray(hours)
    if arr.size and (not np.issubdtype(arr.dtype, np.number) or np.any(arr != np.floor(arr))
                     or arr.min() < 0 or arr.max() > 23):
        raise ValueError("hour must contain integers 0..23")
    return _LOOKUP[arr.astype(np.int64)]
