"""Traffic classes: the Triton priority level each kind of request is sent at (docs/serving.md,
"Traffic classes").

Every queue of a finsent repository (tokenizer, classifier, postprocess, document model) orders its
requests by these levels, lowest first, and bounds each level (model_repository/classes.py renders
them). An ensemble passes the caller's priority on to its steps.
"""

from __future__ import annotations

HEALTH = 1  # the probes (server/health.py): never wait behind traffic
INTERACTIVE = 2  # Client / AsyncClient .classify, `finsent classify`, the gateway's /classify
BACKGROUND = 3  # `finsent score`, documents (their sentences are BLS requests, which get DEFAULT)
CLASSES = {"health": HEALTH, "interactive": INTERACTIVE, "background": BACKGROUND}
# What a request that names no priority gets: curl, a plain tritonclient, and a document model's
# sentences (a Python model's BLS request cannot set one in r24.10). So a plain request is served
# as background work is, never worse.
DEFAULT = BACKGROUND
# The request parameter that names the class inside the Python steps (a Python model cannot read a
# request's priority; the ensemble copies its caller's parameters onto every step): the classifier runs
# and answers the levels below BACKGROUND before the background rows it was handed with them, and the
# postprocess leaves HEALTH texts (the probes) out of the finsent_* series.
TRAFFIC_PARAMETER = "finsent_traffic"
# The ensemble config's parameter giving the rows a background request should hold at most: the
# batcher joins requests up to that many rows, but runs a larger single request whole.
BACKGROUND_ROWS_PARAMETER = "background_batch_size"
# The ensemble config's parameter naming the ensemble background work goes to instead, where the server
# has one: on CPU a copy of the classifier that runs at the lowest CPU priority, so the kernel preempts its
# runs for interactive ones (a classifier run cannot be preempted inside Triton). Absent on GPU.
BACKGROUND_MODEL_PARAMETER = "background_model"


def level(traffic: str | int) -> int:
    """The priority level of a class name or level; ValueError naming the choices."""
    if isinstance(traffic, int) and traffic in CLASSES.values():
        return traffic
    if traffic in CLASSES:
        return CLASSES[traffic]
    raise ValueError(f"traffic class {traffic!r}: one of {', '.join(CLASSES)}")
