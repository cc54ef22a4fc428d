"""The floor of the EPP's transport: a grpcio asyncio ``ExternalProcessor`` that answers
every ext_proc message with a canned reply and does nothing else.

    python -m infergate.bench.epp_cost_grpc_floor --port 19000

Same server library, event loop (uvloop) and messages as ``infergate epp``, none of its
work (no parsing, no scheduling, no metrics). Its CPU per request is what one ext_proc
stream costs in this Python process model, whatever the EPP does. Prints ``ready`` when
listening.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2 as core_pb
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

_ROUTED = pb.ProcessingResponse(request_body=pb.BodyResponse(response=pb.CommonResponse(
    header_mutation=pb.HeaderMutation(set_headers=[core_pb.HeaderValueOption(
        header=core_pb.HeaderValue(key="x-gateway-destination-endpoint", raw_value=b"10.0.0.1:8000"))]),
    clear_route_cache=True)))
_REPLIES = {
    "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
    "request_body": _ROUTED,
    "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
    "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
}


class CannedProcessor(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    async def Process(  # gRPC method name
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ProcessingResponse]:
        async for request in request_iterator:
            reply = _REPLIES.get(request.WhichOneof("request") or "")
            if reply is not None:
                yield reply


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_ExternalProcessorServicer_to_server(CannedProcessor(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
