"""Which logged Bedrock invocations a distillation (or RFT) job trains on: ``requestMetadataFilters``.

The shapes are botocore's ``RequestMetadataFilters`` and ``RequestMetadataBaseFilters`` (service
``bedrock``, 2023-04-20), in the config's snake_case: one condition (``equals`` or ``not_equals``, a
single metadata key and value), or ``and_all`` / ``or_all`` over 1 to 16 conditions. Exactly one of
the four, as botocore's union requires. Keys and values follow the service model's patterns.

This module depends on pydantic only, so that ``tuneline.config`` can use it as a field type.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["MetadataCondition", "RequestMetadataFilters"]

_KEY = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9\s._:/=+$@-]{1,256}$")]
_VALUE = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9\s._:/=+$@-]{0,256}$")]
# botocore's RequestMetadataMap: exactly one key and its value.
_Pair = Annotated[dict[_KEY, _VALUE], Field(min_length=1, max_length=1)]


def _api(values: dict[str, Any]) -> dict[str, Any]:
    names = {"equals": "equals", "not_equals": "notEquals", "and_all": "andAll", "or_all": "orAll"}
    return {names[k]: v for k, v in values.items() if v is not None}


class MetadataCondition(BaseModel):
    """One condition of ``and_all`` / ``or_all``: the metadata key equals (or does not equal) a value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    equals: _Pair | None = None
    not_equals: _Pair | None = None

    @model_validator(mode="after")
    def _some(self) -> MetadataCondition:
        if self.equals is None and self.not_equals is None:
            raise ValueError("a condition needs equals: {key: value} or not_equals: {key: value}")
        return self

    def to_api(self) -> dict[str, Any]:
        return _api({"equals": self.equals, "not_equals": self.not_equals})


class RequestMetadataFilters(BaseModel):
    """``trainingDataConfig.invocationLogsConfig.requestMetadataFilters``: exactly one of the four."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    equals: _Pair | None = None
    not_equals: _Pair | None = None
    and_all: list[MetadataCondition] | None = Field(default=None, min_length=1, max_length=16)
    or_all: list[MetadataCondition] | None = Field(default=None, min_length=1, max_length=16)

    @model_validator(mode="after")
    def _exactly_one(self) -> RequestMetadataFilters:
        given = [
            name for name in ("equals", "not_equals", "and_all", "or_all") if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of equals, not_equals, and_all or or_all"
                + (f" (got {', '.join(given)}): combine conditions with and_all or or_all" if given else "")
            )
        return self

    def to_api(self) -> dict[str, Any]:
        """The botocore shape, camelCase."""
        return _api(
            {
                "equals": self.equals,
                "not_equals": self.not_equals,
                "and_all": [c.to_api() for c in self.and_all] if self.and_all is not None else None,
                "or_all": [c.to_api() for c in self.or_all] if self.or_all is not None else None,
            }
        )
