"""The operator console: server-rendered pages at ``/console/`` (issue 10)."""

from aisopod_session.service.console._views import install

__all__ = ["install"]
