"""The services this command knows, and how to build each one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.commissions import service as commissions
from services.registration import service as registration
from services.tiering import service as tiering
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    port: int
    factory: str
    """``module:function`` that uvicorn calls to build the ASGI app."""
    settings: Callable[[], ServiceSettings]
    build: Callable[..., ServiceRuntime]

    def build_runtime(self, **overrides: Any) -> ServiceRuntime:
        return self.build(self.settings().model_copy(update=overrides))


SERVICES: dict[str, ServiceEntry] = {
    "registration": ServiceEntry(
        "registration",
        8001,
        "services.registration.service:create_app",
        ServiceSettings,
        registration.build_runtime,
    ),
    "commissions": ServiceEntry(
        "commissions",
        8002,
        "services.commissions.service:create_app",
        ServiceSettings,
        commissions.build_runtime,
    ),
    "tiering": ServiceEntry(
        "tiering",
        8003,
        "services.tiering.service:create_app",
        ServiceSettings,
        tiering.build_runtime,
    ),
}
