"""The base of every model: immutable, strict about unknown fields, typed errors on bad input.

Every model of the library, the results the store returns and the service's bodies build on
:class:`Model`. A ``ValidationError`` never escapes: it becomes an
:class:`~aisopod_session.errors.InvalidInputError` whose ``errors`` name each bad field.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from aisopod_session.errors import InvalidInputError

__all__ = ["Model", "invalid_input_from", "remember_validated_kinds", "validated_twin",
           "validates_directly"]



def invalid_input_from(exc: ValidationError, what: str) -> InvalidInputError:
    errors = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if len(loc) >= 2 and loc[-1] == "[key]":  # a bad dict key: name the dict, show the key
            bad_key = repr(loc[-2])
            if len(bad_key) > 40:
                bad_key = bad_key[:36] + "...'"
            loc = loc[:-2]
            message = f"key {bad_key}: {message}"
        field = ".".join(str(part) for part in loc) or what
        errors.append({"field": field, "message": message})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return InvalidInputError(f"invalid {what}: {summary}", errors)


F = TypeVar("F", bound=Callable[..., None])


def validates_directly(init: F) -> F:
    """Mark a model's ``__init__`` as a thin wrapper around pydantic's own.

    pydantic calls a model's custom ``__init__`` from ``model_validate``, ``model_validate_json``
    and when the model is nested in another. A wrapper with its own signature (positional key
    parts) would then fail with ``TypeError`` on a dict that lacks a field; marked, pydantic
    validates the data itself and reports the missing field like any other.
    """
    init.__pydantic_base_init__ = True  # type: ignore[attr-defined]
    return init


_new_object = object.__new__
_set_attribute = object.__setattr__


def _slot_setter(name: str) -> Callable[[Any, Any], None]:
    """The setter of one of BaseModel's slots, called directly: about a quarter faster than
    ``object.__setattr__`` (which looks the descriptor up on every call)."""
    descriptor = BaseModel.__dict__.get(name)
    setter: Callable[[Any, Any], None] | None = getattr(descriptor, "__set__", None)
    if setter is not None:
        return setter
    return lambda model, value: _set_attribute(model, name, value)  # pragma: no cover


_set_dict = _slot_setter("__dict__")
_set_fields_set = _slot_setter("__pydantic_fields_set__")
_set_extra = _slot_setter("__pydantic_extra__")
_set_private = _slot_setter("__pydantic_private__")

_VALIDATED_LIMIT = 16_384
_REMEMBERED: set[type[Any]] = set()
_validated: dict[tuple[type[Any], tuple[tuple[str, Any], ...]], Any] = {}
_validated_lock = threading.Lock()


def _remember_validated(model: Any) -> None:
    """Note that ``model``'s field values passed validation (for the kinds named to
    :func:`remember_validated_kinds` only).

    The store checks every key, filter, patch and query it is given once more (one built with
    ``model_construct`` or ``model_copy(update=...)`` never was), and a lookup here by the exact
    field values is far cheaper than validating again: a gateway builds a key, validated, and
    hands it straight to the store. Only instances that went through validation are noted, so
    an unvalidated instance is found only if its values equal ones that were validated.
    """
    if type(model) not in _REMEMBERED:
        return
    try:
        entry = (type(model), tuple(model.__dict__.items()))
        if entry in _validated:
            return
    except TypeError:  # an unhashable field (metadata): validated again when used
        return
    with _validated_lock:
        _validated[entry] = model
        if len(_validated) > _VALIDATED_LIMIT:  # oldest first: dicts keep insertion order
            del _validated[next(iter(_validated))]


def validated_twin(kind: type[Any], fields: tuple[tuple[str, Any], ...]) -> Any:
    """A ``kind`` instance with exactly these field values that passed validation, or None.

    Raises TypeError when a value is unhashable.
    """
    return _validated.get((kind, fields))


class Model(BaseModel):
    """Immutable, strict about unknown fields, and raising InvalidInputError on bad input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @validates_directly
    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise invalid_input_from(exc, type(self).__name__) from None
        _remember_validated(self)

    @classmethod
    def _from_store(cls, values: dict[str, Any]) -> Self:
        """Build from values the store wrote itself (every field given, already valid).

        What ``model_construct`` does, without its per-field bookkeeping: reads are the hot
        path, and building the models was most of the cost of a history read.
        """
        model = _new_object(cls)
        _set_dict(model, values)
        _set_fields_set(model, set(values))
        _set_extra(model, None)
        _set_private(model, None)
        return model

    @classmethod
    def _from_store_many(cls, rows: list[dict[str, Any]]) -> list[Self]:
        """``[cls._from_store(values) for values in rows]``, every dict with the same keys,
        without a call per row (a history read builds twenty or more at a time)."""
        if not rows:
            return []
        new, set_dict, set_fields_set, set_extra, set_private = (
            _new_object, _set_dict, _set_fields_set, _set_extra, _set_private)
        # One set shared by the models of a read: pydantic changes a model's fields set only
        # in ``__setattr__``, which a frozen model refuses, and ``model_copy`` copies it first.
        fields_set = set(rows[0])
        models = []
        for values in rows:
            model = new(cls)
            set_dict(model, values)
            set_fields_set(model, fields_set)
            set_extra(model, None)
            set_private(model, None)
            models.append(model)
        return models

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        try:
            model = super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise invalid_input_from(exc, cls.__name__) from None
        if not isinstance(obj, BaseModel):  # an instance is passed through, never validated
            _remember_validated(model)
        return model

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Self:
        try:
            model = super().model_validate_json(json_data, **kwargs)
        except ValidationError as exc:
            raise invalid_input_from(exc, cls.__name__) from None
        _remember_validated(model)
        return model


def remember_validated_kinds(*kinds: type[Model]) -> None:
    """Keep the validated instances of ``kinds`` (hashable values only) for
    :func:`validated_twin`: the store checks every key, filter, patch and query again."""
    _REMEMBERED.update(kinds)
