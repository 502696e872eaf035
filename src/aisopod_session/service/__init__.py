"""The HTTP service: FastAPI app, configuration, auth and the uvicorn runner."""

from aisopod_session.service.app import create_app
from aisopod_session.service.config import ServiceConfig, load_config
from aisopod_session.service.server import BackgroundService

__all__ = ["BackgroundService", "ServiceConfig", "create_app", "load_config"]
