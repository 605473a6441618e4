"""Small pieces every command shares and that need neither torch nor each other's packages:
atomic file writes and one-line errors for bad Hydra overrides.

harness, kernels and analysis may all import this; it imports none of them (DESIGN.md's
one-way data flow stays intact: analysis still never imports harness or models).
"""
