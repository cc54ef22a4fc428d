"""util.grpc_server: a subclass registers its services; port 0 binds a free port; stop ends calls."""

from __future__ import annotations

import grpc
import pytest

from infergate.util.grpc_server import GrpcServer


def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"echo " + request


class EchoServer(GrpcServer):
    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.unary_unary_rpc_method_handler(_echo)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {"Say": handler}),))


async def test_a_server_on_port_0_serves_its_services_until_stopped() -> None:
    server = EchoServer(host="127.0.0.1", port=0)
    await server.start()
    assert server.port > 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        say = channel.unary_unary("/test.Echo/Say")
        assert await say(b"hi", timeout=5) == b"echo hi"
        await server.stop(0)
        with pytest.raises(grpc.aio.AioRpcError):
            await say(b"again", timeout=2)
    await server.stop()  # stopping twice is harmless
    await server.wait()  # and a stopped server does not block
