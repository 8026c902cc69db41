"""RewardConfig: paper defaults, validation, frozen."""

from __future__ import annotations

import pydantic
import pytest

from arpo_core.algo.rewards.config import RewardConfig


def test_defaults_are_the_papers() -> None:
    config = RewardConfig()
    assert config.answer_metric == "f1"
    assert config.format_penalty == -1.0
    assert config.tool_bonus == 0.1
    assert config.bonus_tools == ("search", "python")
    assert config.tool_tags == ("search", "python")
    assert config.require_think is True


def test_every_field_is_described() -> None:
    for name, field in RewardConfig.model_fields.items():
        assert field.description, f"RewardConfig.{name} has no description"


def test_frozen_and_no_unknown_keys() -> None:
    config = RewardConfig()
    with pytest.raises(pydantic.ValidationError):
        config.tool_bonus = 0.5  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        RewardConfig(tool_bouns=0.5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"answer_metric": "bleu"}, "answer_metric"),
        ({"bonus_tools": ("search", "browse")}, "not in tool_tags"),
        ({"tool_tags": ("search", "result")}, "cannot name a tool"),
        ({"tool_tags": ("bad tag",)}, "cannot name a tool"),
        ({"tool_tags": ("search", "search")}, "twice"),
        ({"math_timeout_seconds": 0}, "math_timeout_seconds"),
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        RewardConfig(**kwargs)


def test_extra_tools_and_a_smaller_bonus_set() -> None:
    config = RewardConfig(tool_tags=("search", "python", "browse"), bonus_tools=("browse",))
    assert config.bonus_tools == ("browse",)
    assert RewardConfig.model_validate({"tool_tags": ["search"], "bonus_tools": ["search"]}).tool_tags == ("search",)
