"""What the clients share (finsent/core.py): the discovery plans, run here with a server's answers
given as data (the seam the plans are built on), and the fallback list of ensembles."""

from __future__ import annotations

import pytest

from finsent.core import ENSEMBLES, Call, check_health, choose_model, list_models, read_info
from finsent.errors import ModelError, RestrictedError, UnavailableError
from finsent.results import Health, ModelStatus
from model_repository.assemble import FAMILIES


def run(plan, answer):
    """Drive a plan as the clients do, `answer(call)` standing for the server; returns (result, calls)."""
    calls, step = [], next(plan)
    while isinstance(step, Call):
        calls.append(step)
        step = plan.send(answer(step))
    return step, calls


def test_the_clients_fallback_knows_every_ensemble_a_repository_can_hold():
    assert ENSEMBLES == tuple(FAMILIES)


def test_the_model_chosen_is_the_one_served_else_the_default():
    only_distilbert = lambda call: call.args == ("distilbert",)
    assert run(choose_model("t:1"), only_distilbert)[0] == "distilbert"
    assert run(choose_model("t:1"), lambda call: True)[0] == "finbert"
    with pytest.raises(ModelError, match="serves none of the finsent ensembles"):
        run(choose_model("t:1"), lambda call: ModelError("not found"))


def test_health_never_raises_and_never_retries_its_probes():
    down = UnavailableError("refused")
    health, calls = run(check_health(None, "t:1"), lambda call: down)
    assert health == Health(False, False, None, False) and [c.retry for c in calls] == [False]
    # Ready, but serving no finsent ensemble: the model is not ready, and no error escapes.
    answers = {"is_server_live": True, "is_server_ready": True, "is_model_ready": ModelError("unknown")}
    health, calls = run(check_health(None, "t:1"), lambda call: answers[call.method])
    assert health == Health(True, True, None, False)
    assert [c.retry for c in calls if c.method.startswith("is_server")] == [False, False]


def test_an_unknown_model_is_named_with_those_served():
    answers = lambda call: ModelError("unknown") if call.method == "get_model_config" else call.args == ("finbert",)
    with pytest.raises(ModelError, match=r"'fin' is not served by Triton at t:1; it serves finbert \(choose"):
        run(read_info("fin", "t:1"), answers)


def test_a_restricted_index_lists_the_ensembles_through_their_metadata():
    def answer(call):
        if call.method == "get_model_repository_index":
            return RestrictedError("This API is restricted")
        if call.method == "get_model_metadata":
            return {"versions": ["1"]} if call.args == ("finbert",) else ModelError("not found")
        raise AssertionError(call)

    rows, _ = run(list_models(None, "t:1"), answer)
    assert rows == [
        ModelStatus("distilbert", "", "UNAVAILABLE", "not loaded, or not in the repository"),
        ModelStatus("finbert", "1", "READY"),
    ]
