"""Token-mixing ops, each a plain-PyTorch reference (``naive.py``) that fast kernels will be checked against.

Every op that streams takes an explicit state and returns the new one; nothing is cached on modules.
"""
