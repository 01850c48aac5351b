"""`lmforge serve`: an OpenAI-compatible HTTP server and a chat page over the inference engine."""

from lmforge.serve.app import create_app
from lmforge.serve.runner import EngineRunner

__all__ = ["EngineRunner", "create_app"]
