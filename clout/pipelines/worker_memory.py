"""Objects shared by every instance of a DoFn inside one worker process.

A runner may hand successive bundles of one key, or of one partition, to different instances of
the same DoFn in a process, so memory that must follow the key lives here, under a key of the
transform's own (a token made when the pipeline is built), not on the instance.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_SHARED: dict[Hashable, Any] = {}
_LOCK = threading.Lock()


def shared(key: Hashable, create: Callable[[], T]) -> T:
    """The process's object for `key`, made by `create` on first use."""
    with _LOCK:
        if key not in _SHARED:
            _SHARED[key] = create()
        return _SHARED[key]
