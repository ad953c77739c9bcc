"""Served accuracy (`make eval`): a checkpoint served by Triton (server.stack) and scored through
finsent.Client, against the same checkpoint in PyTorch. Above server/: it runs the stack, never the reverse."""
