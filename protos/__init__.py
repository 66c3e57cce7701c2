"""The agent contract (`v1/agent.proto`) and its generated Python code."""
