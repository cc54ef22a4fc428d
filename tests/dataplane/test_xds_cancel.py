"""The xDS server's waits end with their caller's cancel even when it comes as the wait is satisfied.

Python 3.11's ``asyncio.wait_for`` returns the inner result and drops a cancel that arrives in the
same loop iteration as the inner completion: a push (called from the controller's sync loop) then
returned normally after its cancel and the loop went on. The technique of tests/epp/test_stop.py.
"""
from __future__ import annotations

import asyncio

from infergate.dataplane.xds_server import XdsServer, _Stream


async def test_waiting_for_a_connection_cancelled_as_envoy_connects_stops() -> None:
    xds = XdsServer()
    xds._cond = asyncio.Condition()  # what start() makes, without the gRPC server
    task = asyncio.ensure_future(xds.wait_for_connection(10.0))
    await asyncio.sleep(0.05)
    await xds._cond.acquire()  # free: no suspension, the connect and the cancel come in one iteration
    xds._streams[1] = _Stream(1)
    xds._cond.notify_all()
    xds._cond.release()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=2.0)
    assert done and task.cancelled()  # before: it returned as if nothing had cancelled it
