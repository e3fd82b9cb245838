"""Click choices built from enums, so an option offers exactly the values the code knows."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, TypeVar

import click

E = TypeVar("E", bound=StrEnum)


class EnumChoice(click.Choice[str], Generic[E]):
    """A choice among the values of ``enum``; the command receives the member.

    Users type, and help and errors list, the values (``nft``), in the enum's order, exactly as
    ``click.Choice([m.value for m in enum])`` shows them; click's own enum support would list the
    member names (``NFT``) instead. Give a default as its value (``default="auto"``): click shows
    a member given as the default by its name.
    """

    def __init__(self, enum: type[E]) -> None:
        super().__init__([member.value for member in enum])
        self.enum = enum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> E:
        if isinstance(value, self.enum):
            return value
        return self.enum(super().convert(value, param, ctx))


def enum_choice(enum: type[E]) -> EnumChoice[E]:
    """The click type of an option whose values are ``enum``'s: ``type=enum_choice(Backend)``."""
    return EnumChoice(enum)
