"""hilnas.v1: generated from agent.proto by `python -m hilnas.protos.generate`. Never edit by hand."""
