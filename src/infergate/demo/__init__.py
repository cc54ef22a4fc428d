"""`infergate demo` (`make demo`): a whole installation on `infergate up`, with real requests.

    from infergate.demo import Demo, DemoOptions
    demo = Demo(DemoOptions(stack="split", exit_after_requests=True))
    result = await demo.start()   # DemoResult: gateway address/port, requests (model, pod, status...)
    await demo.stop()

See docs/demo.md.
"""

from infergate.demo.runner import Demo, DemoError, DemoOptions, DemoResult, RequestRecord

__all__ = ["Demo", "DemoError", "DemoOptions", "DemoResult", "RequestRecord"]
