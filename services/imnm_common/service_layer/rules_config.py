"""Read a rules-config file (YAML or JSON) into :class:`RulesConfig`, for every entry point."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from imnm_common.domain.config import DEFAULT_RULES_CONFIG, RulesConfig


class RulesConfigError(ValueError):
    """The file cannot be read or names an unknown key or an invalid threshold."""


def load_rules_config(path: str | None) -> RulesConfig:
    if not path:
        return DEFAULT_RULES_CONFIG
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise RulesConfigError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise RulesConfigError(f"{path} is not YAML/JSON: {error}") from None
    try:
        return RulesConfig.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RulesConfigError(f"{where}: {first['msg']}") from None
