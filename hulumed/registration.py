"""Registration of the Hulu-Med classes with transformers' Auto classes, done when they are first needed.

After it, ``AutoConfig`` / ``AutoModel`` / ``AutoModelForCausalLM`` / ``AutoImageProcessor`` /
``AutoProcessor`` ``.from_pretrained(folder)`` resolve ``model_type`` ``hulumed_qwen2`` / ``hulumed_qwen3`` /
``hulumed_vision_encoder`` to hulumed's classes. Official folders carry an ``auto_map`` pointing at upstream's
remote code; transformers prefers registered local classes when ``trust_remote_code`` is not set.

``import hulumed`` must stay cheap (no torch), yet ``import hulumed`` followed by
``from transformers import AutoModelForCausalLM`` must find our classes, whatever the import order.
``install_import_hook`` arranges that without importing transformers: every Auto class looks its classes up
in a mapping object (``CONFIG_MAPPING``, ``MODEL_FOR_CAUSAL_LM_MAPPING``, ``PROCESSOR_MAPPING``, ...) and
every lookup reads the mapping's ``_extra_content`` dict, where ``register`` puts added classes. When one of
transformers' ``models/auto`` modules is imported (a small finder on ``sys.meta_path`` sees it), the class of
each mapping object in it is switched to a subclass whose ``_extra_content`` first runs
``register_auto_classes``. So the first lookup, inside ``from_pretrained`` when every import is finished,
registers; nothing else about those objects changes. A lookup made while transformers is still half imported
(circular import) leaves registration to the next lookup.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

_AUTO_MODULES = tuple(
    f"transformers.models.auto.{name}"
    for name in ("configuration_auto", "modeling_auto", "processing_auto", "image_processing_auto")
)
_lock = threading.RLock()
_state = "todo"  # "todo" -> "doing" -> "done"


def register_auto_classes() -> None:
    """Idempotent: safe to call more than once, from any thread."""
    global _state
    if _state == "done":
        return
    with _lock:
        if _state != "todo":  # done by another thread, or this thread is registering right now
            return
        _state = "doing"
        try:
            _register()
        except BaseException:
            _state = "todo"
            raise
        _state = "done"
    remove_import_hook()


def _register_on_lookup() -> None:
    if _state == "done":
        return
    try:
        register_auto_classes()
    except ImportError as error:
        if "partially initialized" not in str(error):
            raise
        # looked up while transformers is half imported: the next lookup registers


def _register() -> None:
    from transformers.models.auto import (
        AutoConfig,
        AutoImageProcessor,
        AutoModel,
        AutoModelForCausalLM,
        AutoProcessor,
    )

    from .model.configuration import HulumedVisionEncoderConfig
    from .model.modeling import FAMILIES
    from .model.vision_encoder import HulumedVisionEncoder
    from .processing.image_processing import HulumedImageProcessor
    from .processing.processor import HulumedProcessor

    AutoConfig.register("hulumed_vision_encoder", HulumedVisionEncoderConfig, exist_ok=True)
    AutoModel.register(HulumedVisionEncoderConfig, HulumedVisionEncoder, exist_ok=True)
    for family in FAMILIES:
        AutoConfig.register(family.config_class.model_type, family.config_class, exist_ok=True)
        AutoModel.register(family.config_class, family.model_class, exist_ok=True)
        AutoModelForCausalLM.register(family.config_class, family.causal_lm_class, exist_ok=True)
    for config_class in (family.config_class for family in FAMILIES):
        AutoImageProcessor.register(config_class, image_processor_classes={"pil": HulumedImageProcessor}, exist_ok=True)
        AutoProcessor.register(config_class, HulumedProcessor, exist_ok=True)


def _with_registering_lookups(base: type) -> type:
    """A subclass of a transformers mapping class whose ``_extra_content`` registers our classes first."""
    cached = _SUBCLASSES.get(base)
    if cached is None:

        def get(self: Any) -> dict:
            _register_on_lookup()
            return self.__dict__["_extra_content"]

        def put(self: Any, value: dict) -> None:
            self.__dict__["_extra_content"] = value

        members: dict[str, Any] = {"_extra_content": property(get, put)}
        if hasattr(base, "_from_pickle"):  # pickles as the plain transformers mapping

            def reduce(self: Any) -> tuple:
                _, state = base.__reduce__(self)
                return base._from_pickle, state

            members["__reduce__"] = reduce
        cached = _SUBCLASSES[base] = type(base.__name__, (base,), members)
    return cached


_SUBCLASSES: dict[type, type] = {}


def _patch_mappings(module: ModuleType) -> None:
    for value in list(vars(module).values()):
        kind = type(value)
        if kind.__name__ in ("_LazyAutoMapping", "_LazyConfigMapping") and "_extra_content" in vars(value):
            value.__class__ = _with_registering_lookups(kind)


class _AutoModuleFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; makes the mapping objects of transformers' auto modules register on first use."""

    def __init__(self) -> None:
        self._searching = False

    def find_spec(
        self, name: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in _AUTO_MODULES or self._searching:
            return None
        self._searching = True
        try:
            spec = importlib.util.find_spec(name)  # the other finders' answer
        finally:
            self._searching = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            _patch_mappings(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_finder = _AutoModuleFinder()


def install_import_hook() -> None:
    """Make transformers' Auto classes register Hulu-Med on first use (imports nothing heavy)."""
    if _state == "done":
        return
    for name in _AUTO_MODULES:
        if name in sys.modules:
            _patch_mappings(sys.modules[name])
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def remove_import_hook() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
