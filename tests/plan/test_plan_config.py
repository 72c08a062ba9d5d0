"""The typed trial config: built by the compiler, schema defaults, the same dict as before."""

from __future__ import annotations

import dataclasses

import pytest
from plan_fixtures import cohort, make_suite

from raybench.errors import SuiteError
from raybench.plan import Selection, TrialConfig, apply_point, compile_suite, selection_of
from raybench.plan import config as cfg
from raybench.runner.selection import choose_point
from raybench.suite import schema

SECTIONS = [
    (cfg.TaskConfig, schema.Task, {"type"}),
    (cfg.ModelConfig, schema.Model, {"arch"}),
    (cfg.TrainingConfig, schema.Training, set()),
    (cfg.EarlyStoppingConfig, schema.EarlyStopping, set()),
    (cfg.EvaluationConfig, schema.Evaluation, set()),
    (cfg.ResourcesConfig, schema.Resources, set()),
    (cfg.UncertaintyConfig, schema.Uncertainty, set()),
    (cfg.InputNoiseConfig, schema.InputNoise, set()),
    (cfg.McDropoutConfig, schema.McDropout, set()),
    (cfg.WandbConfig, schema.WandB, set()),
]

#: Typed fields built from several suite keys (evaluation.explanations + evaluation.explain): they
#: have no single schema default and are None unless the suite asks for them.
DERIVED = {(cfg.EvaluationConfig, "explain"), (cfg.TrainingConfig, "save_model")}


@pytest.mark.parametrize(("typed", "model", "required"), SECTIONS)
def test_every_default_is_the_suite_schemas(typed, model, required) -> None:
    for f in dataclasses.fields(typed):
        if (typed, f.name) in DERIVED:
            assert f.default is None
            continue
        if f.name in required:
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        expected = model.model_fields[f.name].get_default(call_default_factory=True)
        assert default == (tuple(expected) if isinstance(expected, list) else expected), f.name


def test_compiled_configs_round_trip_through_the_typed_view() -> None:
    plan = compile_suite(make_suite(), {"synth": cohort()})
    for spec in plan.trials:
        typed = spec.settings
        assert isinstance(typed, TrialConfig)
        assert typed.to_dict() == spec.config
        assert TrialConfig.from_dict(typed.to_dict()) == typed
    refit = next(t for t in plan.trials if t.stage == "refit" and t.params is None)
    assert refit.settings.training.unresolved() == ["lr"]
    resolved = apply_point(refit.config, refit.candidates[0])
    assert TrialConfig.from_dict(resolved).training.unresolved() == []
    perturbation = refit.settings.evaluation.perturbations[0]
    assert (perturbation.id, perturbation.severity) == ("gaussian_noise(std=0.05)", 0.05)


UNCERTAINTY = {
    "input_noise": {"std": 0.1},
    "mc_dropout": {"draws": 5},
    "calibration": ["temperature"],
}


def _uncertain_suite(uncertainty: dict | None) -> schema.Suite:
    models = [{"name": "small", "arch": "classifier", "params": {"dropout": 0.2}}]
    evaluation = {"metrics": ["auc"]} | ({"uncertainty": uncertainty} if uncertainty else {})
    return make_suite(models=models, evaluation=evaluation, training={"epochs": 2})


def test_uncertainty_enters_the_config_and_the_ids_only_when_asked() -> None:
    off = compile_suite(_uncertain_suite(None), {"synth": cohort()})
    on = compile_suite(_uncertain_suite(UNCERTAINTY), {"synth": cohort()})
    assert all("uncertainty" not in t.config["evaluation"] for t in off.trials)
    assert all(t.settings.evaluation.uncertainty is None for t in off.trials)
    typed = on.trials[0].settings.evaluation.uncertainty
    assert typed == cfg.UncertaintyConfig(
        input_noise=cfg.InputNoiseConfig(type="gaussian_noise", std=0.1, draws=20),
        mc_dropout=cfg.McDropoutConfig(draws=5),
        calibration=("temperature",),
    )
    for spec in on.trials:
        assert TrialConfig.from_dict(spec.config) == spec.settings
        assert spec.settings.to_dict() == spec.config
    assert {t.trial_id for t in on.trials}.isdisjoint(t.trial_id for t in off.trials)
    with pytest.raises(SuiteError, match=r"evaluation.uncertainty: unknown key\(s\) \['drawz'\]"):
        TrialConfig.from_dict(
            {**on.trials[0].config, "evaluation": {"uncertainty": {"mc_dropout": {"drawz": 3}}}}
        )


def test_missing_keys_get_schema_defaults_unknown_keys_are_refused() -> None:
    data = {"task": {"type": "regression"}, "model": {"arch": "regressor"}, "suite": "s", "x": 1}
    typed = TrialConfig.from_dict(data)
    assert typed.training.epochs == schema.Training().epochs
    assert typed.resources.max_retries == schema.Resources().max_retries
    assert typed.extra == {"x": 1} and typed.to_dict()["x"] == 1
    with pytest.raises(SuiteError, match=r"trial config training: unknown key\(s\) \['lrr'\]"):
        TrialConfig.from_dict({**data, "training": {"lrr": 0.1}})
    with pytest.raises(SuiteError, match="missing required key"):
        TrialConfig.from_dict({"task": {"type": "regression"}, "suite": "s"})
    with pytest.raises(SuiteError, match=r"task\.type='cls'"):
        TrialConfig.from_dict({**data, "task": {"type": "cls"}})


def test_one_function_gives_the_selection_metric_and_its_direction() -> None:
    assert selection_of(None, "classification") == Selection("loss", False)
    assert selection_of("auc", "classification") == Selection("auc", True)
    assert selection_of("mae", "regression") == Selection("mae", False)
    with pytest.raises(SuiteError, match=r"not available for task\.type='regression'"):
        selection_of("auc", "regression")


def test_refit_selection_follows_the_trials_selection_direction() -> None:
    suite = make_suite(evaluation={"metrics": ["auc"], "selection_metric": "brier"})
    plan = compile_suite(suite, {"synth": cohort()})
    refit = next(t for t in plan.trials if t.stage == "refit" and t.params is None)
    search = {t.trial_id: t for t in plan.trials if t.trial_id in refit.depends_on}
    assert refit.settings.selection == Selection("brier", False)
    best = refit.candidates[1]
    scores = {tid: (0.1 if t.params == best else 0.3) for tid, t in search.items()}
    assert choose_point(refit, search, scores) == best  # the lowest Brier score wins
