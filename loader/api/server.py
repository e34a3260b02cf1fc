"""Placeholder: the REST API server is built in loader/api (see issue on REST)."""

from __future__ import annotations

from loader.log import get_logger


class ApiServer:
    def __init__(self, service, host: str, port: int) -> None:
        self.service = service
        self.host = host
        self.port = port

    async def start(self) -> None:
        get_logger().warning("api.unavailable", reason="the REST API is not built yet", rest=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        pass
