"""The endpoint picker (EPP): for every request, pick the best model-server pod of one InferencePool."""
