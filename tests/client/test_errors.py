"""The client's errors (finsent/errors.py): one base class to catch, each one public, and what it is."""

import finsent
from finsent import errors

ERRORS = [e for e in vars(errors).values() if isinstance(e, type) and issubclass(e, Exception)]


def test_every_error_is_a_finsent_error_importable_from_finsent():
    assert len(ERRORS) == 7
    assert all(issubclass(e, errors.FinsentError) and e.__name__ in finsent.__all__ for e in ERRORS)


def test_an_overloaded_server_is_unavailable_for_now_and_a_refused_text_is_a_bad_value():
    assert issubclass(errors.OverloadedError, errors.UnavailableError)  # retried as an unreachable server is
    error = errors.TextError(4, "is empty or whitespace only")
    assert isinstance(error, ValueError) and (error.index, error.reason) == (4, "is empty or whitespace only")
    assert str(error) == "text 4 is empty or whitespace only"
