"""Flow control: priority admission when the pool is saturated (see controller.py)."""

from infergate.epp.flowcontrol.controller import FlowControlConfig, FlowController

__all__ = ["FlowControlConfig", "FlowController"]
