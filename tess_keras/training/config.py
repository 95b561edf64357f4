"""A training run's configuration: ``TrainConfig``, built from the dataset's
recipe, a TOML file and explicit options, validated, and checked against a
saved run on ``--resume``."""

import dataclasses
import math
import tomllib
from pathlib import Path

# Options a resumed run may change; every other option is part of the run.
RESUMABLE_CHANGES = ("epochs", "data_dir", "cluster_timeout")


class ConfigError(ValueError):
    """A training option is invalid; the message names it and the fix."""


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a training run.

    Attributes:
        dataset: dataset name (``tess_keras.data.LOADERS``).
        rule: ``tess``, ``stllr`` or ``bptt``.
        model: ``mcu`` or ``vgg9`` (``tess_keras.models.MODELS``).
        epochs: epochs to train in total.
        batch_size: samples per batch.
        time_steps: T; 0 means the dataset's default.
        lr: Adam's initial learning rate.
        alpha_post: TESS/S-TLLR non-causal term weight (spec: -1, 0 or +1).
        lsg_source: where TESS's learning signal reads: ``block`` (after a
            following max-pool, spec default) or ``layer`` (the layer's spikes).
        seed: seed of the weights, the data order and augmentation.
        data_dir: where datasets live ("" = the loader's default).
        out: the run directory.
        limit_train: train on a seeded, stratified subset of N training
            samples (0 = all); for quick experiments and tests.
        limit_test: at most N samples (seeded, stratified) of the
            validation split and N of the test split (0 = all).
        strategy: ``default`` (one device), ``mirrored`` (every local GPU)
            or ``multi-worker`` (machines listed in ``TF_CONFIG``); see
            ``tess_keras.distribute``. ``batch_size`` is the global batch.
        precision: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.
        jit: compile the rule's gradient computation with XLA.
        validation_fraction: share of the training data held out as the
            validation split (seeded, stratified); ``None`` = the dataset's
            default (``tess_keras.data.INFO[dataset].validation_fraction``,
            resolved and saved when the run starts); 0 = no validation split.
        allow_incomplete: train on a dataset with missing classes or files
            instead of stopping; what is missing goes into ``summary.json``.
        cluster_timeout: ``multi-worker``: seconds to wait for the other
            workers of ``TF_CONFIG`` before stopping with their names.
    """

    dataset: str = "digits"
    rule: str = "tess"
    model: str = "mcu"
    epochs: int = 20
    batch_size: int = 32
    time_steps: int = 0
    lr: float = 1e-3
    alpha_post: float = 1.0
    lsg_source: str = "block"
    seed: int = 0
    data_dir: str = ""
    out: str = "runs/latest"
    limit_train: int = 0
    limit_test: int = 0
    strategy: str = "default"
    precision: str = "float32"
    jit: bool = False
    validation_fraction: float | None = None
    allow_incomplete: bool = False
    cluster_timeout: float = 120.0


FIELDS = {field.name: field.type for field in dataclasses.fields(TrainConfig)}


def _kind(name):
    """``"str"``, ``"int"``, ``"float"`` or ``"bool"``: the type a value of
    field ``name`` must have (``float | None`` is ``"float"``)."""
    kind = FIELDS[name]
    return getattr(kind, "__name__", None) or str(kind).split(" | ")[0]


def read_config_file(path):
    """Options from a TOML recipe file, validated for names and types.

    Args:
        path: the TOML file; keys are ``TrainConfig`` fields (dashes or
            underscores).

    Returns:
        dict of field name to value.

    Raises:
        ConfigError: the file is missing, unreadable, not TOML, or has an
            unknown key or a value of the wrong type.
    """
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}.") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}.") from None
    options = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FIELDS:
            raise ConfigError(f"config file {path}: unknown key {key!r}; valid keys: {', '.join(FIELDS)}.")
        kind = _kind(name)
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = {"str": str, "int": int, "float": float, "bool": bool}[kind]
        if not isinstance(value, expected) or (isinstance(value, bool) and kind != "bool"):
            wanted = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}[kind]
            raise ConfigError(f"config file {path}: {key} must be {wanted}, got {value!r}.")
        options[name] = value
    return options


def _chosen(options, config_file):
    chosen = read_config_file(config_file) if config_file else {}
    chosen.update({k: v for k, v in options.items() if v is not None})
    return chosen


def resolve_config(options, config_file=None):
    """The run's ``TrainConfig``: the dataset's recipe, then the config
    file, then explicit options.

    Args:
        options: dict of ``TrainConfig`` fields; ``None`` values = not given.
        config_file: optional TOML file (``read_config_file``).

    Raises:
        ConfigError: a value is invalid (the message lists valid ones).
    """
    from tess_keras.recipes import get_recipe

    chosen = _chosen(options, config_file)
    dataset = chosen.get("dataset", TrainConfig.dataset)
    recipe = get_recipe(dataset)
    values = {
        "model": recipe.model,
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "time_steps": recipe.time_steps,
        "lr": recipe.lr,
        "alpha_post": recipe.alpha_post,
    }
    values.update(chosen)
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config):
    """Check the names and numbers of ``config``.

    Args:
        config: a ``TrainConfig``.

    Raises:
        ConfigError: the first invalid value, with the valid choices.
    """
    from tess_keras import data, distribute, models, rules

    if config.dataset not in data.LOADERS:
        raise ConfigError(f"unknown dataset {config.dataset!r}; choose one of: {', '.join(sorted(data.LOADERS))}.")
    if config.rule not in rules.RULES:
        raise ConfigError(f"unknown rule {config.rule!r}; choose one of: {', '.join(rules.RULES)}.")
    if config.model not in models.MODELS and config.model != "imported":  # imported: `tess import`
        raise ConfigError(f"unknown model {config.model!r}; choose one of: {', '.join(models.MODELS)}.")
    for name in ("epochs", "batch_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}.")
    for name in ("time_steps", "limit_train", "limit_test"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(config, name)}.")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ConfigError(f"--lr must be a positive finite number, got {config.lr:g}.")
    if not (math.isfinite(config.cluster_timeout) and config.cluster_timeout > 0):
        raise ConfigError(f"--cluster-timeout must be a positive number of seconds, got {config.cluster_timeout:g}.")
    if not (math.isfinite(config.alpha_post) and -1.0 <= config.alpha_post <= 1.0):
        raise ConfigError(f"--alpha-post must be between -1 and 1 (the paper uses -1, 0 or 1), got {config.alpha_post:g}.")
    if config.lsg_source not in rules.LSG_SOURCES:
        raise ConfigError(f"--lsg-source must be block (the spec's default) or layer, got {config.lsg_source!r}.")
    fraction = config.validation_fraction
    if fraction is not None and not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
        raise ConfigError(
            "--validation-fraction must be at least 0 and below 1 (0.1 holds out a tenth of the training data for "
            f"validation; 0 trains without a validation split), got {fraction:g}."
        )
    try:
        if config.strategy not in distribute.STRATEGIES:
            raise distribute.DistributeError(
                f"unknown --strategy {config.strategy!r}; choose one of: {', '.join(distribute.STRATEGIES)}."
            )
        distribute.check_precision(config.precision)
        if config.strategy == "multi-worker":
            distribute.read_tf_config()
    except distribute.DistributeError as error:
        raise ConfigError(str(error)) from None


def check_compatible(saved, options, config_file=None):
    """The configuration of a resumed run.

    Args:
        saved: the run's saved ``TrainConfig``.
        options: explicit options (``None`` values = not given).
        config_file: optional TOML file.

    Returns:
        ``saved`` with only ``epochs`` and ``data_dir`` changed.

    Raises:
        ConfigError: an explicit option (or config-file value) differs from
            the saved run.
    """
    chosen = _chosen(options, config_file)
    chosen.pop("out", None)
    changes = {}
    for name, value in chosen.items():
        if name in RESUMABLE_CHANGES:
            changes[name] = value
            continue
        current = getattr(saved, name)
        if name == "time_steps" and value == 0:
            continue
        if value != current:
            flag = "--" + name.replace("_", "-")
            if isinstance(current, bool):  # --jit on/off, --allow-incomplete on/off
                value, current = ("on" if v else "off" for v in (value, current))
            raise ConfigError(
                f"{flag} {value} differs from the run being resumed ({flag} {current}); a resumed run keeps its "
                f"configuration (only --epochs and --data-dir may change). Drop {flag}, or start a new run with "
                "another --out."
            )
    config = dataclasses.replace(saved, **changes)
    validate(config)
    return config
