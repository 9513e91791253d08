"""An HTTP emulator of the OpenAI Files + Batches API (plus the synchronous endpoints).

    with Emulator(EmulatorConfig(request_time=1)) as emu:
        client = OpenAI(api_key="x", base_url=emu.base_url)
"""
from .app import create_app
from .config import EmulatorConfig
from .server import Emulator, serve

__all__ = ["Emulator", "EmulatorConfig", "create_app", "serve"]
