"""Shared state on Redis: streams served, resumed and stopped from any instance.

``RedisState`` is the hub's ``SharedState`` for ``[state] backend = "redis"``
(docs/scaling.md); ``check`` tells whether Redis answers, for ``chorus serve``'s start.
"""

from .link import check
from .shared import RedisState

__all__ = ["RedisState", "check"]
