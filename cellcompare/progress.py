"""Progress bars that show on a terminal only.

Every progress bar of the project comes from :func:`progress_bar`, so one rule decides when a
bar is drawn: on an interactive terminal (or in a notebook), never in a log file, a pipe or a
test run, where a bar's carriage returns would bury the lines a person reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable | None = None, *, enabled: bool = True, **tqdm_kwargs: Any) -> tqdm:
    """A tqdm bar that is drawn only when its stream (stderr by default) is a terminal.

    Parameters
    ----------
    iterable : iterable, optional
        What to loop over; leave it out and pass ``total=`` to update the bar by hand.
    enabled : bool
        ``False`` turns the bar off even on a terminal (the deep models' ``progress`` option,
        or a loop too short to be worth a bar).
    **tqdm_kwargs
        Passed to :class:`tqdm.auto.tqdm` (``desc``, ``total``, ``unit``, ``leave``, ...), except
        ``disable``, which this function decides.

    Returns
    -------
    tqdm
        The bar; iterate over it as over ``iterable``. A disabled bar yields the same items and
        writes nothing.

    Example
    -------
    >>> from cellcompare.progress import progress_bar
    >>> [x for x in progress_bar(range(3), desc="demo")]
    [0, 1, 2]
    """
    if "disable" in tqdm_kwargs:
        raise TypeError("progress_bar() decides `disable` itself; pass enabled=False to turn the bar off")
    # disable=None is tqdm's "off unless the output stream is a TTY"
    return tqdm(iterable, disable=None if enabled else True, **tqdm_kwargs)
