"""MI command definitions: a command's parameter *recipes* and how one call's params are read.

A :class:`Command` accepts one or more :class:`Recipe` (OpenSIPS ``mi_recipe_t``): lists of
parameter names, given positionally or by name. :func:`match_recipe` picks the recipe a call
fits exactly as OpenSIPS's ``get_cmd_recipe`` does, and :class:`Params` reads the values
through it (OpenSIPS's ``get_mi_*_param``, with cJSON's number rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ...cjson import INT_MAX, INT_MIN, JObject, cjson_valueint
from .errors import (
    DET_AMBIGUOUS,
    DET_MATCH_PARAMS,
    DET_NO_PARAMS,
    INVALID_PARAMS,
    SERVER_ERROR,
    MIError,
    bad_type,
)

__all__ = ["Command", "Handler", "Params", "Recipe", "match_recipe"]


@dataclass(frozen=True, slots=True)
class Recipe:
    """One accepted parameter list of a command (OpenSIPS ``mi_recipe_t``).

    ``named_only`` recipes are skipped for positional calls, so optional parameters can be
    given by name in any combination without making positional calls ambiguous.
    """

    params: tuple[str, ...]
    named_only: bool = False


Handler: TypeAlias = Callable[["Params"], Any]
"""A command implementation: returns the ``result`` (or an awaitable of it), raises MIError."""


@dataclass(frozen=True, slots=True)
class Command:
    """An MI command: its name, aliases, recipes, handler and one line of help."""

    name: str
    recipes: tuple[Recipe, ...]
    handler: Handler
    help: str = ""
    aliases: tuple[str, ...] = ()


class Params:
    """The parameters of one call, read through the recipe that matched (as OpenSIPS's
    ``get_mi_*_param``): positional values are looked up by the recipe's names."""

    __slots__ = ("_item", "recipe")

    def __init__(self, item: JObject | list[Any] | None, recipe: Recipe) -> None:
        self._item = item
        self.recipe = recipe

    def has(self, name: str) -> bool:
        return name in self.recipe.params

    def raw(self, name: str) -> Any:
        """The JSON value of ``name``; MIError(-32000) if the recipe has no such param (a bug)."""
        if self._item is None or name not in self.recipe.params:
            raise MIError.of(SERVER_ERROR, "Failed to handle parameter")
        if isinstance(self._item, list):
            return self._item[self.recipe.params.index(name)]
        return self._item[name]

    def string(self, name: str) -> str:
        """A string param; a number is accepted and printed as an int (OpenSIPS ``sint2str``)."""
        value = self.raw(name)
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(cjson_valueint(value))
        raise bad_type(name)

    def integer(self, name: str) -> int:
        """An int param: a number (truncated, saturated) or a string holding a decimal int."""
        value = self.raw(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return cjson_valueint(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
            if len(value.lstrip("+-").lstrip("0")) > 10:  # beyond C int: saturate, no int()
                return INT_MIN if value.startswith("-") else INT_MAX
            return cjson_valueint(int(value))
        raise bad_type(name)

    def flag(self, name: str) -> bool:
        """A yes/no param: ``true``/``false``, ``1``/``0``, or the strings ``1 0 y n yes no
        true false`` (any case). Anything else is an error rather than a silent default."""
        value = self.raw(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            if value in (0, 1):
                return bool(value)
        elif isinstance(value, str):
            low = value.lower()
            if low in ("1", "y", "yes", "true"):
                return True
            if low in ("0", "n", "no", "false"):
                return False
        raise bad_type(name)

    def array(self, name: str) -> list[Any]:
        """A non-empty array param."""
        value = self.raw(name)
        if not isinstance(value, list):
            raise bad_type(name)
        if not value:
            raise MIError.of(INVALID_PARAMS, f"Empty array in parameter '{name}'")
        return value


def match_recipe(recipes: Sequence[Recipe], params: JObject | list[Any] | None) -> Recipe:
    """OpenSIPS ``get_cmd_recipe``: by count for positional params, by count then names for
    named ones; the error detail says which of the two failed."""
    if params is None:
        for r in recipes:
            if not r.params:
                return r
        raise MIError.of(INVALID_PARAMS, DET_NO_PARAMS)
    positional = isinstance(params, list)
    count = len(params) if isinstance(params, list) else len(params.pairs)
    match: Recipe | None = None
    count_matched = False
    for r in recipes:
        if not r.params or len(r.params) != count:
            continue
        if positional:
            if r.named_only:
                continue
            if match is not None:
                raise MIError.of(INVALID_PARAMS, DET_AMBIGUOUS)
            match = r
        else:
            count_matched = True
            assert isinstance(params, JObject)
            if all(name in params for name in r.params):
                return r
    if match is not None:
        return match
    raise MIError.of(INVALID_PARAMS, DET_MATCH_PARAMS if count_matched else DET_NO_PARAMS)
