"""Hosts on one machine: network namespaces joined by veth pairs to one bridge, made and removed by a test.

`Network.create()` makes a bridge with an address in a private /24 (so the test process itself can reach
every host), `add_host(name)` a namespace with loopback up (kernels talk ZMQ over 127.0.0.1) and one veth
into the bridge with the next address. `close()` removes the namespaces and the bridge (the veths go with
them). Kill the processes inside first: deleting a namespace does not end them. Needs root (CAP_NET_ADMIN)
and `ip`; `Unavailable` says why not.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass, field


class Unavailable(Exception):
    """Why namespaces cannot be made here."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise Unavailable(f"`ip {' '.join(args)}` failed: {done.stderr.strip()[:300]}")
    return done


@dataclass
class Host:
    namespace: str
    address: str

    @property
    def exec_prefix(self) -> list[str]:
        """Run a command on this host: `ip netns exec NS` (which execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", self.namespace]


@dataclass
class Network:
    tag: str
    subnet: str  # "10.213.N"
    bridge: str
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge_address(self) -> str:
        return f"{self.subnet}.1"

    @classmethod
    def create(cls) -> Network:
        if not shutil.which("ip"):
            raise Unavailable("the `ip` command (iproute2) is not installed")
        used = _ip("-o", "-4", "addr", "show", check=False).stdout
        free = [n for n in range(10, 250) if f" 10.213.{n}." not in used]
        if not free:
            raise Unavailable("no free 10.213.N.0/24 subnet for the test network")
        tag = secrets.token_hex(3)
        net = cls(tag, f"10.213.{secrets.choice(free)}", f"flb{tag}")
        try:
            _ip("link", "add", "name", net.bridge, "type", "bridge")
            _ip("addr", "add", f"{net.bridge_address}/24", "dev", net.bridge)
            _ip("link", "set", net.bridge, "up")
        except Unavailable:
            net.close()
            raise
        return net

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 2
        namespace, outside, inside = f"fl-{self.tag}-{name}", f"flv{self.tag}{index}", f"fli{self.tag}{index}"
        host = Host(namespace, f"{self.subnet}.{index}")
        _ip("netns", "add", namespace)
        self.hosts[name] = host
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        return host

    def close(self) -> None:
        for host in self.hosts.values():
            _ip("netns", "delete", host.namespace, check=False)
        _ip("link", "delete", self.bridge, check=False)
        self.hosts.clear()


def namespaces_permitted() -> str | None:
    """None if a namespace can be made here, else why not."""
    if not shutil.which("ip"):
        return "the `ip` command (iproute2) is not installed"
    probe = f"fl-probe-{secrets.token_hex(3)}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here ({done.stderr.strip()[:200]}); it needs root or CAP_NET_ADMIN"
    _ip("netns", "delete", probe, check=False)
    return None
