"""The gateway controller: providers feed resources to a pure translator that produces the
intermediate model (``ir``) and resource statuses; the data plane turns the IR into Envoy config."""
