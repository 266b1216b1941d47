"""Every error class says what it means in a sentence of its own: the `description` of its JSON answers
(server/web/api/errors.py sends the class's docstring; a class without one sent only its code)."""

from __future__ import annotations

import inspect

from flask import Flask

from server.core import errors
from server.web.api.errors import register

CLASSES = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.ServiceError)]


def test_every_error_class_has_a_sentence_of_its_own():
    descriptions = {}
    for cls in CLASSES:
        text = cls.__dict__.get("__doc__")
        assert text, f"{cls.__name__} has no docstring: its answers' description would be its code"
        assert text[0].isupper() and text.endswith(".") and "\n" not in text, f"{cls.__name__}: {text!r} is not one sentence"
        descriptions[cls.__name__] = text
    assert len(set(descriptions.values())) == len(descriptions), "two error classes share a description"


def test_the_answer_carries_the_class_sentence():
    app = Flask(__name__)
    register(app)

    @app.get("/boom")
    def boom():  # type: ignore[no-untyped-def]
        raise errors.InvalidInput("title", "too long")

    body = app.test_client().get("/boom").json
    assert body["code"] == "invalid_input"
    assert body["description"] == errors.InvalidInput.__doc__
