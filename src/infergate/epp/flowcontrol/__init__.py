"""Flow control: priority admission when the pool is saturated (see controller.py)."""

from infergate.epp.flowcontrol.controller import PLACEMENTS, FlowControlConfig, FlowController

__all__ = ["PLACEMENTS", "FlowControlConfig", "FlowController"]
