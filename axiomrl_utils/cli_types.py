"""tyro with AxiomRL's extra flag types: a JSON object (`--env-kwargs '{"k": 1}'`).

tyro leaves a `dict[str, Any]` field out of the command line (it cannot parse Any values); this
module's registry reads it as one JSON object, so the field also reads back from config.yaml as a
real mapping.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

JSON_OBJECT = dict[str, Any]


def _registry() -> Any:
    from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec

    registry = ConstructorRegistry()

    @registry.primitive_rule
    def json_object(type_info: Any) -> Optional[Any]:
        if type_info.type != JSON_OBJECT:
            return None
        return PrimitiveConstructorSpec(
            nargs=1,
            metavar="JSON",
            instance_from_str=lambda strings: parse_json_object(strings[0], "the flag"),
            is_instance=lambda value: isinstance(value, dict),
            str_from_instance=lambda value: [json.dumps(value)],
        )

    return registry


def parse_json_object(text: str, flag: str) -> dict[str, Any]:
    """`text` as a JSON object; ValueError with a sentence naming `flag` and the expected form."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{flag} takes a JSON object such as '{{\"max_episode_steps\": 200}}'; {text!r} is not JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} takes a JSON object such as '{{\"max_episode_steps\": 200}}', not {text!r}")
    return value


def tyro_cli(args_type: type, argv: Sequence[str], default: Any = None, unknown_ok: bool = False) -> Any:
    """tyro.cli on `argv` with AxiomRL's flag types; with `unknown_ok`, returns (args, unknown arguments)."""
    import tyro

    return tyro.cli(args_type, args=list(argv), default=default, return_unknown_args=unknown_ok, registry=_registry())
