"""Configs: paper defaults, TOML/YAML loading, overrides, and one-sentence errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from arpo_core.config import ArpoConfig, BranchingConfig, ConfigError, EntropyConfig, load_config


def test_defaults_are_the_papers() -> None:
    c = ArpoConfig()
    assert c.algo.entropy == EntropyConfig(estimator="topk", top_logprobs=10, window=20, reduction="sum")
    assert c.algo.branching.budget == 16 and c.algo.branching.global_samples == 8
    assert c.algo.advantage.attribution == "soft" and c.algo.advantage.epsilon == 1e-6
    assert c.algo.reward.tool_bonus == 0.1 and c.algo.reward.format_penalty == -1.0


def test_every_field_is_documented() -> None:
    def walk(model: type) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            assert field.description, f"{model.__name__}.{name} has no docstring"
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                walk(annotation)

    walk(ArpoConfig)


def test_frozen_and_forbids_extra() -> None:
    c = BranchingConfig()
    with pytest.raises(Exception, match="frozen"):
        c.budget = 3  # type: ignore[misc]


def test_load_toml_and_yaml_with_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "run.toml"
    toml.write_text("seed = 3\n[algo.branching]\nbudget = 12\nglobal_samples = 6\n")
    c = load_config(toml, ["algo.branching.beta=0.4", "algo.advantage.attribution=hard"])
    assert (c.seed, c.algo.branching.budget, c.algo.branching.global_samples) == (3, 12, 6)
    assert c.algo.branching.beta == 0.4 and c.algo.advantage.attribution == "hard"
    yml = tmp_path / "run.yaml"
    yml.write_text("algo:\n  entropy:\n    estimator: topk_tail\n    reduction: mean\n")
    c = load_config(yml)
    assert c.algo.entropy.estimator.value == "topk_tail" and c.algo.entropy.reduction == "mean"
    assert load_config() == ArpoConfig()


@pytest.mark.parametrize(
    ("text", "suffix", "overrides", "message"),
    [
        (
            "[algo.branching]\nbudgett = 3\n",
            ".toml",
            [],
            r"unknown option 'algo.branching.budgett'.*valid options",
        ),
        (
            "[algo.branching]\nbudget = 4\nglobal_samples = 8\n",
            ".toml",
            [],
            r"global_samples=8 exceeds budget=4",
        ),
        (
            "[algo.entropy]\ntop_logprobs = 50\n",
            ".toml",
            [],
            r"algo.entropy.top_logprobs=50 .* less than or equal",
        ),
        ("algo: [1, 2\n", ".yaml", [], r"not valid YAML"),
        ("x = 1\n", ".ini", [], r"suffix '.ini'"),
        ("", ".toml", ["algo.branching.beta"], r"not of the form section.key=value"),
        ("", ".toml", ["algo.advantage.attribution=medium"], r"attribution='medium'.*'soft' or 'hard'"),
    ],
)
def test_bad_input_gives_one_clear_sentence(
    tmp_path: Path, text: str, suffix: str, overrides: list[str], message: str
) -> None:
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, overrides)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config("/nonexistent/run.toml")


def test_tool_call_section_builds_the_parser() -> None:
    from arpo_core.toolcalls import HermesProtocol, TagProtocol

    assert isinstance(ArpoConfig().tool_calls.make_parser(), TagProtocol)
    c = load_config(overrides=["tool_calls.protocol=hermes", "tool_calls.stop_on_call_end=true"])
    parser = c.tool_calls.make_parser()
    assert isinstance(parser, HermesProtocol)
    assert parser.stop_sequences == ("</tool_call>",)
    turn = ArpoConfig().tool_calls.make_parser().parse("<python>print(2)</python>")
    assert [(c.name, dict(c.arguments)) for c in turn.calls] == [("python", {"code": "print(2)"})]
