"""Shipped weights: NAME.safetensors with a JSON model card NAME.json each."""
