"""Strict (de)serialisation of configs: every key is known and every value has the declared type.

`merge` is the one code path for TOML files, command-line overrides and a saved run.json, so all three give
the same messages: an unknown key names itself and the valid keys of its table, a wrong type names the key,
what was expected and what was given (:func:`vaebench.config.constraints.coerce`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import typing
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli package (a dependency there)
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        tomllib = None

from vaebench import devices
from vaebench.config.constraints import coerce, describe
from vaebench.config.sections import EXECUTION_KEYS, SuiteConfig, preset, real_valued
from vaebench.config.validate import validate
from vaebench.data import is_data_file
from vaebench.errors import VaebenchError
from vaebench.plugins.registry import BUILT_CHECKPOINTS, load_configured


def merge(config: Any, data: dict[str, Any], prefix: str = "") -> Any:
    """A copy of the dataclass `config` with the keys of `data` replaced, checked strictly.

    Args:
        config: a config dataclass instance (e.g. a `SuiteConfig`).
        data: nested mapping like the TOML file; tables map to sub-dataclasses, lists to tuples.
        prefix: dotted path of `config` for error messages.

    Raises:
        VaebenchError: an unknown key (listing the valid ones) or a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise VaebenchError(f"config key {_where(prefix)} must be a table, got {describe(data)}")
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise VaebenchError(f"unknown config key {path!r}; valid keys{_of(prefix)}: {', '.join(names)}")
        current = getattr(config, key)
        if dataclasses.is_dataclass(current):
            changes[key] = merge(current, value, prefix=f"{path}.")
        else:
            changes[key] = coerce(value, hints[key], path)
    return dataclasses.replace(config, **changes)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-able data (tuples become lists); :func:`from_dict` inverts it."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def from_dict(data: dict[str, Any]) -> SuiteConfig:
    """Rebuild a `SuiteConfig` from :func:`to_dict` output (e.g. a saved run.json), strictly."""
    return merge(SuiteConfig(), data)


def config_hash(config: SuiteConfig, inputs: dict[str, Any] | None = None) -> str:
    """SHA-256 of everything that can change a number: the configuration (all but `EXECUTION_KEYS`) and
    ``inputs``, what it names but does not hold (the plugins' fingerprints, a data file's SHA-256; an empty
    one is left out).
    """
    data = to_dict(config)
    for key in EXECUTION_KEYS:
        data.pop(key, None)
    data |= {k: v for k, v in (inputs or {}).items() if v}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two configs differ, each as 'key: a -> b'."""
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            out += differences(x, y, f"{prefix}{f.name}.")
        elif x != y:
            out.append(f"{prefix}{f.name}: {_show(x)} -> {_show(y)}")
    return out


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _where(prefix: str) -> str:
    return repr(prefix.rstrip(".")) if prefix else "(top level)"


def _of(prefix: str) -> str:
    return f" in [{prefix.rstrip('.')}]" if prefix else ""


def _fit_real_valued(config: SuiteConfig, *layers: dict[str, Any]) -> tuple[SuiteConfig, list[str]]:
    """Data that are not grey levels (`real_valued`): preset settings made for pixels (dequantization,
    binarization, a Bernoulli decoder) are turned off, with a note; the same settings asked for explicitly stay
    (and are rejected by `validate`, naming the key, where they cannot apply)."""
    if not real_valued(config.data.name):
        return config, []

    def explicit(section: str, key: str) -> bool:
        return _explicit(layers, section, key)

    data, model, changed = {}, {}, []
    if config.data.dequantize and not explicit("data", "dequantize"):
        data["dequantize"] = False
        changed.append("data.dequantize = false")
    if config.data.binarize != "none" and not explicit("data", "binarize"):
        data["binarize"] = "none"
        changed.append("data.binarize = 'none'")
    if config.model.likelihood == "bernoulli" and not explicit("model", "likelihood"):
        model["likelihood"] = "auto"
        changed.append("model.likelihood = 'auto' (Gaussian)")
    if not changed:
        return config, []
    config = dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, **data),
        model=dataclasses.replace(config.model, **model),
    )
    what = "synthetic data are" if config.data.name == "synthetic" else f"{config.data.name} holds"
    return config, [
        f"{what} real values, not pixel grey levels, so the preset's pixel settings give way: {', '.join(changed)}"
    ]


def _explicit(layers: tuple[dict[str, Any], ...], section: str, key: str) -> bool:
    """Whether a TOML file or the flags set ``section.key`` themselves."""
    return any(isinstance(layer.get(section), dict) and key in layer[section] for layer in layers)


def _fit_built(config: SuiteConfig, *layers: dict[str, Any]) -> tuple[SuiteConfig, list[str]]:
    """The Gaussian toy's data bring the toy's model (unless ``model.name`` is set), and a model whose
    checkpoint is built, not trained (`vaebench.plugins.registry.BUILT_CHECKPOINTS`), has one checkpoint to measure at:
    ``variance.checkpoints`` becomes ``["end"]`` unless set; each change with a note."""
    changed = []
    if config.data.name == "gaussian-toy" and config.model.name == "gaussian-vae":
        if not _explicit(layers, "model", "name"):
            config = dataclasses.replace(config, model=dataclasses.replace(config.model, name="gaussian-toy"))
            changed.append(
                "model.name = 'gaussian-toy' (the toy's own model; set model.name to train a VAE on it)"
            )
    if config.model.name in BUILT_CHECKPOINTS and config.variance.checkpoints != ("end",):
        if not _explicit(layers, "variance", "checkpoints"):
            variance = dataclasses.replace(config.variance, checkpoints=("end",), summary_checkpoint="end")
            config = dataclasses.replace(config, variance=variance)
            changed.append("variance.checkpoints = ['end'] (the built checkpoint)")
    if not changed:
        return config, []
    return config, [
        f"the {config.model.name} model is measured at a built checkpoint, not a trained one: {'; '.join(changed)}"
    ]


def _relative_to(config: SuiteConfig, data: dict[str, Any], folder: Path) -> SuiteConfig:
    """A data file named in a TOML file by a relative path is relative to that file's folder."""
    named = (data.get("data") or {}).get("name") if isinstance(data.get("data"), dict) else None
    if not (isinstance(named, str) and is_data_file(named)) or Path(named).is_absolute():
        return config
    if config.data.name != named:  # a flag named another data set
        return config
    return dataclasses.replace(config, data=dataclasses.replace(config.data, name=str(folder / named)))


# ------------------------------------------------------------------------------------------------ loading


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file (tomllib on Python 3.11+, the `tomli` package on 3.10); a UTF-8 byte-order mark, which
    some editors write first, is accepted (as most TOML readers do)."""
    if tomllib is None:
        raise VaebenchError(
            "reading a --config file needs Python 3.11+ or the 'tomli' package: pip install tomli"
        )
    path = Path(path)
    if not path.exists():
        raise VaebenchError(f"config file {str(path)!r} does not exist")
    if not path.is_file():
        raise VaebenchError(f"config file {str(path)!r} is not a file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise VaebenchError(f"config file {str(path)!r} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise VaebenchError(
            f"config file {str(path)!r} is not valid TOML: not UTF-8 text (byte {err.start}); is it a binary file?"
        ) from None
    except ValueError:  # an integer literal past Python's 4300-digit conversion limit
        long = re.search(r"[0-9_]{4000,}", text)
        where = text[: long.start()].splitlines()[-1] if long else ""
        line = text[: long.start()].count("\n") + 1 if long else "?"
        raise VaebenchError(
            f"config file {str(path)!r}, line {line} ({where.strip()} ...): an integer of over 4000 digits; no "
            "setting takes a number that long"
        ) from None
    except OSError as err:
        raise VaebenchError(f"config file {str(path)!r} cannot be read: {err.strerror}") from None


def load_config(path: str | Path, base: str | None = None) -> SuiteConfig:
    """Read a TOML config on top of a preset (not yet validated; see :func:`resolve`).

    Args:
        path: the TOML file.
        base: preset to start from; None uses the file's own `preset` key, else "default".
    """
    return _merge_file(read_toml(path), base)


def _merge_file(data: dict[str, Any], base: str | None) -> SuiteConfig:
    data = dict(data)
    named = data.pop("preset", None)
    if named is not None and not isinstance(named, str):
        raise VaebenchError(f"config key 'preset' must be a string, got {describe(named)}")
    return merge(preset(base or named or "default"), data)


def resolve(
    *, preset_name: str | None = None, config_file: str | Path | None = None, overrides: dict | None = None
) -> tuple[SuiteConfig, list[str]]:
    """Build and validate the configuration of a run: preset, then file, then overrides.

    Args:
        preset_name: quick, default or paper; None uses the file's `preset` key, else "default".
        config_file: optional TOML file.
        overrides: nested mapping (like the TOML) from command-line flags.

    Returns:
        The validated config (with `device="auto"` resolved) and notes for the user (skipped combinations).
    """
    data = read_toml(config_file) if config_file is not None else {}
    config = _merge_file(data, preset_name)
    overrides = overrides or {}
    config = merge(config, overrides)
    if config_file is not None:
        config = _relative_to(config, data, Path(config_file).resolve().parent)
    config = load_configured(config)
    config, fitted = _fit_real_valued(config, data, overrides)
    config, toy = _fit_built(config, data, overrides)
    notes = fitted + toy
    notes += validate(config, explicit_estimators="estimators" in data or "estimators" in overrides)
    if config.device == "auto":
        config = dataclasses.replace(config, device=devices.auto())
    return config, notes
