"""Fault injection: rules that make commands misbehave on purpose (the chaos harness)."""
