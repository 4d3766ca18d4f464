"""The parsed gin config checked before RUN is called (`optiml.main`): every binding against
`validation`'s types and RULES, the config classes built once, and the settings that tie together
(the warm-up below the steps, the batch against microbatches and data-parallel devices, every
mesh against the devices). Errors are `validation.SettingError`, one line naming the binding:

    optiml: TRAIN_STEPS=50 (trainer.train.steps): must exceed the warm-up,
            optimizer.OptimizerConfig.warmup_steps=60

gin-config 0.5.0 (pinned) has public accessors for one configurable's bindings
(`gin.get_bindings`) but none that lists which configurables are bound and how: `GinConfig` reads
that one table, `gin.config._CONFIG`, and nothing else private. A gin upgrade that changes it
fails tests/test_validation.py.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gin
from optiml.validation import Reference, SettingError, check_value


# -- the gin configuration ----------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One binding with its macros resolved: `where` as gin writes it, the macro it came from."""

    where: str  # e.g. "trainer.train.batch_size" or "train/stream.from_mixture.length"
    value: Any
    macro: str | None = None
    default: bool = False  # not bound: the function's default

    def error(self, problem: str) -> SettingError:
        if self.macro:
            return SettingError(f"{self.macro}={self.value!r} ({self.where}): {problem}")
        return SettingError(f"{self.where}={self.value!r}: {problem}")


class GinConfig:
    """Read access to gin's parsed bindings with macros resolved (gin has no public accessor)."""

    def __init__(self) -> None:
        parsed = gin.config._CONFIG  # {(scope, selector): {param: value}}; see the module doc
        self.bindings = {key: dict(v) for key, v in parsed.items() if key[1] != "gin.macro"}
        self.macros = {
            scope: params["value"]
            for (scope, selector), params in parsed.items()
            if selector == "gin.macro" and "value" in params
        }

    def function(self, selector: str) -> Any:
        """The function or class a selector names, undecorated: optiml's gin files register
        dynamically (`from optiml import trainer`), so selectors are full module paths, e.g.
        `optiml.trainer.train`; another project's `@gin.configurable` comes from gin."""
        module, _, name = selector.rpartition(".")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError):  # a `@gin.configurable` of a user's own
            return gin.get_configurable(selector)

    def where(self, scope: str, selector: str, param: str) -> str:
        """As the gin files write it: `[scope/]module.function.param`, e.g. trainer.train.steps."""
        name = ".".join(selector.split(".")[-2:])
        return f"{scope + '/' if scope else ''}{name}.{param}"

    def resolve(self, value: Any, macro: str | None = None) -> tuple[Any, str | None]:
        """(the value with macros replaced, the first macro met on the way)."""
        selector = getattr(value, "_scoped_selector", None)
        if isinstance(selector, str) and selector.endswith("/gin.macro"):
            name = selector[: -len("/gin.macro")]
            return self.resolve(self.macros.get(name), macro or name)
        if isinstance(selector, str):
            scope = selector.rpartition("/")[0]
            return Reference(scope, value.configurable.selector, bool(value.evaluate)), macro
        if isinstance(value, list | tuple):
            return type(value)(self.resolve(v)[0] for v in value), macro
        return value, macro

    def settings(self, selector: str, scope: str = "") -> dict[str, Setting]:
        """Every parameter of `selector` as called in `scope`: its bindings (scoped over
        unscoped) or its default."""
        out = {}
        for name, param in inspect.signature(self.function(selector)).parameters.items():
            if param.default is not inspect.Parameter.empty:
                where = self.where("", selector, name)
                out[name] = Setting(where, param.default, default=True)
        for key in [("", selector)] + ([(scope, selector)] if scope else []):
            for name, raw in self.bindings.get(key, {}).items():
                value, macro = self.resolve(raw)
                out[name] = Setting(self.where(key[0], selector, name), value, macro)
        return out

    def referenced(self, setting: Setting | None, selector: str) -> dict[str, Setting]:
        """The settings of the config class a binding refers to (`@optimizer.OptimizerConfig()`),
        or its defaults when the binding is unbound or None (what the function then builds)."""
        value = setting.value if setting is not None else None
        if isinstance(value, Reference) and value.selector == selector:
            return self.settings(selector, value.scope)
        module, _, name = selector.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        return {
            p: Setting(f"{name}.{p}", param.default, default=True)
            for p, param in inspect.signature(cls).parameters.items()
        }


def check_gin_config(devices: int | None = None) -> None:
    """Check every binding of the parsed gin config, then the cross-setting rules; raises
    SettingError with one line. `devices`: a device count (None: join the job and ask JAX)."""
    config = GinConfig()
    for (scope, selector), params in config.bindings.items():
        fn = config.function(selector)
        for param, raw in params.items():
            value, macro = config.resolve(raw)
            problem = None if isinstance(value, Reference) else check_value(fn, param, value)
            if problem:
                raise Setting(config.where(scope, selector, param), value, macro).error(problem)
        if dataclasses.is_dataclass(fn):
            _construct(fn, config.settings(selector, scope))
    count = functools.cache(lambda: devices if devices is not None else _devices(config))
    if ("", "optiml.trainer.train") in config.bindings:
        _check_training(config, count)
    for scope, selector in config.bindings:
        if selector == "optiml.partitioning.MeshConfig":
            _mesh_shape(config.settings(selector, scope), count())


def _construct(cls: type, settings: dict[str, Setting]) -> None:
    """Build a config dataclass from its settings, so its own checks (e.g. OPTConfig's heads
    dividing the hidden size) run now; a failure names the class's bindings."""
    required = [p for p in inspect.signature(cls).parameters if p not in settings]
    if required or any(isinstance(s.value, Reference) for s in settings.values()):
        return  # built with arguments from code, or from other configurables: checked when built
    try:
        cls(**{name: s.value for name, s in settings.items()})
    except (ValueError, TypeError) as e:
        where = f"{cls.__module__.rpartition('.')[2]}.{cls.__name__}"
        message = str(e) if str(e).startswith(cls.__name__) else f"{cls.__name__}: {e}"
        raise SettingError(f"{where}: {message.removeprefix(cls.__name__ + ': ')}") from None


def _check_training(config: GinConfig, devices: Callable[[], int | list]) -> None:
    train = config.settings("optiml.trainer.train")
    steps, batch, micro = train["steps"], train["batch_size"], train["num_microbatches"]
    warmup = config.referenced(train.get("optimizer"), OPTIMIZER)["warmup_steps"]
    if steps.value <= warmup.value:
        raise steps.error(f"must exceed the warm-up, {warmup.where}={warmup.value}")
    if batch.value % micro.value:
        raise batch.error(f"must be divisible by {micro.where}={micro.value}")
    data, fsdp, _ = _mesh_shape(config.referenced(train.get("mesh"), MESH), devices())
    if batch.value % (data * fsdp):
        raise batch.error(f"must be divisible by the {data * fsdp} data-parallel devices")


OPTIMIZER = "optiml.optimizer.OptimizerConfig"
MESH = "optiml.partitioning.MeshConfig"


def _mesh_shape(mesh: dict[str, Setting], devices: int | list) -> tuple[int, int, int]:
    """(data, fsdp, model) of a MeshConfig's settings on `devices` (a count: one slice; or JAX's
    devices, grouped into slices as the partitioner does); the error names a bound axis size."""
    from optiml import partitioning

    config = partitioning.MeshConfig(**{name: s.value for name, s in mesh.items()})
    try:
        if isinstance(devices, int):
            return partitioning.mesh_shape(config, devices)
        num_slices = len(partitioning.slices(devices, config))
        return partitioning.mesh_shape(config, len(devices), num_slices)
    except ValueError as e:
        axes = [mesh[prefix + a] for prefix in ("", "dcn_") for a in partitioning.MESH_AXES]
        culprit = next((a for a in axes if not a.default), axes[0])
        raise culprit.error(f"{e}") from None


def _devices(config: GinConfig) -> list:
    """JAX's devices, after joining the multi-process job that the training run configures
    (jax.distributed must be initialised before JAX first touches a device)."""
    import jax

    from optiml import partitioning

    if ("", "optiml.trainer.train") in config.bindings:
        setting = config.settings("optiml.trainer.train")["distributed"]
        if isinstance(setting.value, Reference):
            fields = config.settings(setting.value.selector, setting.value.scope)
            distributed = partitioning.DistributedConfig(**{k: s.value for k, s in fields.items()})
            partitioning.initialize_distributed(distributed)
        else:
            partitioning.initialize_distributed(None)
    return jax.devices()
