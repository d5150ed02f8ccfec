"""What a run's checkpoints hold, declared once: the script's modules, optimizers, buffers, tensors
and environments. Saving and restoring both read this one declaration, so nothing can be saved
that a resume does not load back. Replay buffers go to the run's replay store (written once,
incrementally, beside the checkpoints); the checkpoint holds their manifests."""

from __future__ import annotations

from typing import Any, Optional

from axiomrl_utils import checkpoint as ckpt
from axiomrl_utils.replay_store import MANIFEST_KEY, ReplayStore, storable


def _is_tensor(obj: Any) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "copy_") and hasattr(obj, "detach")


class DeclaredState:
    """The named objects a checkpoint holds (state dicts, or tensors restored in place) and the vector env."""

    def __init__(self, replay_store: Optional[ReplayStore] = None) -> None:
        self.objects: dict[str, Any] = {}
        self.envs: Any = None
        self.declared = False
        self.replay_store = replay_store

    def declare(self, envs: Any = None, **objects: Any) -> None:
        if self.declared:
            raise RuntimeError("the run's state is already declared; declare every checkpointed object in one call")
        for name, obj in objects.items():
            if name == ckpt.RESERVED:
                raise ValueError(f"{ckpt.RESERVED!r} is reserved for the run machinery")
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")) and not _is_tensor(obj):
                raise TypeError(
                    f"{name!r} is a {type(obj).__name__}: declare objects with state_dict/load_state_dict "
                    "(modules, optimizers, buffers) or tensors; pass plain loop values to run.save"
                )
        self.objects, self.envs, self.declared = dict(objects), envs, True

    def build_payload(self, values: dict[str, Any], meta: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The checkpoint dict: the declared objects, the loop `values`, and the run's reserved entry."""
        for name, value in values.items():
            if name in self.objects or name == "envs":
                raise ValueError(f"{name!r} is declared state; run.save takes only loop values besides it")
            if hasattr(value, "state_dict"):
                raise TypeError(f"{name!r} has a state_dict: declare it with run.declare_state(...) so a resume restores it")
        stored = {n: o for n, o in self.objects.items() if self.replay_store is not None and storable(o)}
        saved = {name: obj.detach() if _is_tensor(obj) else obj for name, obj in self.objects.items() if name not in stored}
        payload, resume_state = ckpt.build_payload({**saved, **values}, self.envs, meta)
        for name, buffer in stored.items():
            payload[name], stats = self.replay_store.stage(name, buffer)
            resume_state["modules"][name] = stats["bytes"]
            resume_state.setdefault("replay_store", {})[name] = stats
        return payload, resume_state

    def load(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Load the checkpoint into the declared objects; returns the loop values it holds besides them."""
        import torch

        ckpt.load_into(payload, {n: o for n, o in self.objects.items() if not _is_tensor(o)})
        for name, manifest in payload[ckpt.RESERVED].get(MANIFEST_KEY, {}).items():
            if self.replay_store is not None and name in self.objects:
                self.replay_store.adopt(name, manifest)  # the next save writes only what changes after it
        for name, tensor in self.objects.items():
            if _is_tensor(tensor):
                if name not in payload:
                    raise ckpt.CheckpointError(f"the checkpoint has no {name!r}")
                with torch.no_grad():
                    tensor.copy_(payload[name])  # in place: optimizers hold this tensor
        return {k: v for k, v in payload.items() if k != ckpt.RESERVED and k not in self.objects}
