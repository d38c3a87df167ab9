"""The engine: the self-consuming loop (loop.py), its vectorised batch form (batched/), and the theory."""
