"""A version's parameters: the variables its file interpolates, or that its vendor declares.

A parameter is discovered from a compose or stack file (``${VAR}``, ``${VAR:-default}``,
``${VAR:?message}`` ...) or declared on the version (any kind), a declaration refining a
discovered one. Operators set them with ``deploy --env NAME=VALUE``; a required one must be
given, a sensitive one is kept in a Prefect Secret block, never in a record.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgefleet.models.documents import shown

PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
MAX_PARAMETERS = 500  # per version: more is a generated file, not a vendor's interface
MAX_NAME = 128
MAX_DEFAULT = 4096
MAX_TEXT = 500  # a description or a required parameter's message
MASK = "********"


def check_parameter_name(value: str) -> str:
    if not isinstance(value, str) or not PARAM_NAME_RE.match(value) or len(value) > MAX_NAME:
        raise ValueError(f"parameter name {shown(value)} is not valid: use letters, digits and "
                         f"'_', not starting with a digit (at most {MAX_NAME} characters)")
    return value


class Parameter(BaseModel):
    """One parameter of a version, as stored with it and shown by ``app show``.

    ``message`` is the file's own ``${VAR:?message}`` text, said when a deploy lacks it.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    default: str | None = Field(default=None, max_length=MAX_DEFAULT)
    required: bool = False
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    sensitive: bool = False
    message: str | None = Field(default=None, max_length=MAX_TEXT)
    discovered: bool = False  # found in the file (else declared only)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_parameter_name(v)

    @field_validator("default", "description", "message")
    @classmethod
    def _text(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("contains a NUL character")
        return v

    @model_validator(mode="after")
    def _required_has_no_default(self) -> Parameter:
        if self.required and self.default is not None:
            raise ValueError(f"parameter {self.name} is required and has a default "
                             f"({shown(self.default, 40)}): a default already satisfies it")
        return self

    def public(self) -> dict[str, object]:
        """As ``app show`` lists it: a sensitive default is masked."""
        data = self.model_dump()
        if self.sensitive and self.default is not None:
            data["default"] = MASK
        return data


class ParameterDeclaration(BaseModel):
    """What a vendor says of one parameter on ``app create|version --param``."""

    model_config = ConfigDict(extra="forbid")

    name: str
    default: str | None = Field(default=None, max_length=MAX_DEFAULT)
    required: bool = False
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    sensitive: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_parameter_name(v)

    @model_validator(mode="after")
    def _consistent(self) -> ParameterDeclaration:
        if self.required and self.default is not None:
            raise ValueError(f"--param {self.name}={shown(self.default, 40)[1:-1]} has a "
                             "default and --required: a default already satisfies it")
        for value in (self.default, self.description):
            if value is not None and "\x00" in value:
                raise ValueError(f"--param {self.name}: contains a NUL character")
        return self
