"""The job spec's Ascend keys: the device list and the CANN environment (pure).

``devices`` picks the NPUs of each node (ASCEND_RT_VISIBLE_DEVICES, the worker count);
``ascend.set_env`` names the CANN environment scripts the node launch script sources; the HCCL
settings of ``env`` are checked here against what HCCL accepts.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


def parse_devices(value: object) -> list[int]:
    """A device list (``0,1,2,3`` or ``[0, 1, 2, 3]``) as sorted ids; ``ValueError`` otherwise.

    The message follows the name of what was given (``--devices`` or ``devices``). Sorted because
    MindSpore maps local rank i to the i-th smallest visible device when it binds CPU cores, while
    CANN maps it to the i-th listed one: in order, both agree.
    """
    items: list[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
        if items == [""]:
            items = []
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise ValueError(f"must be a list of device ids like 0,1,2,3, got {value!r}")
    if not items:
        raise ValueError("lists no device; give device ids like 0,1,2,3")
    ids: list[int] = []
    for item in items:
        if isinstance(item, str) and re.fullmatch(r"[+-]?[0-9]+", item.strip()):
            number = int(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            number = item
        else:
            raise ValueError(f"has {item!r}, which is not a device id; give integers like 0,1,2,3")
        if number < 0:
            raise ValueError(f"has {number}: device ids are 0 or more")
        if number in ids:
            raise ValueError(f"lists device {number} twice; list each device once")
        ids.append(number)
    return sorted(ids)


#: Where CANN puts its environment scripts when ``ascend.set_env`` is unset: the first toolkit
#: script found (ascend-toolkit before CANN 8.5, cann/ after), then ATB's when present.
DEFAULT_TOOLKIT_SET_ENV = ("/usr/local/Ascend/ascend-toolkit/set_env.sh", "/usr/local/Ascend/cann/set_env.sh")
DEFAULT_ATB_SET_ENV = "/usr/local/Ascend/nnal/atb/set_env.sh"


class AscendSpec(BaseModel):
    """The Ascend software on the nodes (read whatever the device target)."""

    model_config = ConfigDict(extra="forbid")

    set_env: list[str] | None = Field(
        None, description="CANN environment script(s) the node launch script sources before msrun, "
        "as a login shell would (a path or a list; relative or '~/' = under the node user's home). "
        "A listed script that is missing fails the checks. Unset: the first of "
        "/usr/local/Ascend/ascend-toolkit/set_env.sh and /usr/local/Ascend/cann/set_env.sh that "
        "exists, then /usr/local/Ascend/nnal/atb/set_env.sh if present; [] sources nothing.")

    @field_validator("set_env", mode="before")
    @classmethod
    def _one_or_list(cls, v: object) -> object:
        return [v] if isinstance(v, str) else v

    @field_validator("set_env")
    @classmethod
    def _paths(cls, v: list[str] | None) -> list[str] | None:
        for path in v or ():
            if not path.strip() or path in ("~", "~/"):
                raise ValueError("has an empty path; give the set_env.sh file, e.g. "
                                 "/usr/local/Ascend/ascend-toolkit/set_env.sh")
            if any(ord(c) < 32 for c in path):
                raise ValueError(f"path {path!r} has a control character (a newline?); fix it")
            if path.endswith("/"):
                raise ValueError(f"path {path!r} is a directory; give the set_env.sh file in it")
        return v


# HCCL reads these as integer seconds (CANN's environment variable reference); a typo here would
# only show as a hang or an early timeout on the cluster.
_HCCL_SECONDS = {"HCCL_CONNECT_TIMEOUT": (120, 7200), "HCCL_EXEC_TIMEOUT": (0, None)}


def hccl_problem(key: str, value: str) -> str | None:
    if key in _HCCL_SECONDS:
        low, high = _HCCL_SECONDS[key]
        if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
            span = f"{low}-{high}" if high is not None else f"{low} or more"
            return f"{key} must be whole seconds, {span}, got {value!r}"
    if key == "HCCL_IF_IP":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return f"HCCL_IF_IP must be the node's IP address, got {value!r}; for an interface " \
                   "name use HCCL_SOCKET_IFNAME"
    return None
