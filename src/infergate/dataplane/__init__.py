"""The data plane: real Envoy, configured over xDS from the controller's intermediate model."""
