"""Machines on this one machine, for a real `ray up`: each is a network, process and mount namespace of its own,
with an address on a private bridge (10.77.0.2, .3, ...), its own sshd, home, temporary directory and Python
environment. The launching side (`ray up`, `ray exec`, `ray down`) runs in the namespace that holds the bridge, at
10.77.0.1, with a home of its own. Nothing of it is reachable from outside, and when it stops, the kernel ends every
process it ever started.

Why namespaces, and not loopback addresses on one network stack: Ray finds a node's address from the route to the
head, and on loopback every node finds 127.0.0.1, so the recipe's `ray start` lines could not make distinct nodes; and
the recipe's `ray stop` ends every Ray process it can see, on the machine, not only the cluster's.

Run as a script (under `unshare`, by :class:`Machines`), this file is the namespace's first process: it builds the
bridge, starts the machines and then only reaps orphans until it is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

SUBNET = "10.77.0"
LAUNCHER_IP = f"{SUBNET}.1"
# --kill-child: unshare's forked child, the namespace's first process, is killed when unshare ends, however it ends;
# the kernel then ends every process in the namespace and in the namespaces under it
NAMESPACES = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
TOOLS = {"sshd": "/usr/sbin/sshd", "rsync": "rsync", "ssh-keygen": "ssh-keygen", "unshare": "unshare",
         "nsenter": "nsenter", "ip": "ip"}

SSHD_CONFIG = """\
ListenAddress {ip}
HostKey {root}/keys/host
AuthorizedKeysFile {root}/keys/authorized_keys
PidFile none
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
SetEnv TMPDIR={machine}/tmp
"""

# A machine's first process: wait for its end of the bridge's cable, take its address, its /etc/passwd (where this
# user's home is the machine's: sshd, ssh and Ray's `~` all read it there) and its /etc/resolv.conf (a name server
# on its own loopback, where nothing listens: a download fails at once, as on a machine without DNS, instead of
# waiting out the timeouts of a name server it cannot reach), start sshd.
MACHINE = """\
while ! ip link show {link} >/dev/null 2>&1; do sleep 0.05; done
ip link set lo up && ip addr add {ip}/24 dev {link} && ip link set {link} up && ip route add default via {gateway}
mount --bind {machine}/passwd /etc/passwd
mount --bind {root}/resolv.conf /etc/resolv.conf
mkdir -p -m 0755 /run/sshd
exec {sshd} -D -f {machine}/sshd_config -E {machine}/sshd.log
"""

# Each machine's pip has no index (nothing beyond the bridge is reachable) and builds with the setuptools it has.
PIP_CONF = "[global]\nno-index = true\n[install]\nno-build-isolation = false\n"


def missing_tools() -> str | None:
    """Why machines cannot be made here, or None."""
    if os.geteuid() != 0:
        return "machines need root: network namespaces, a bridge, sshd on port 22"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [name for name, tool in TOOLS.items() if not shutil.which(tool, path=path)]
    if missing:
        return f"not installed: {', '.join(missing)} (Debian: apt-get install openssh-server rsync)"
    probe = subprocess.run([*NAMESPACES, "true"], capture_output=True, text=True)
    if probe.returncode:
        return f"no namespaces here: {probe.stderr.strip()}"
    return None


def process_tree(matches: Callable[[str], bool]) -> list[int]:
    """The processes whose command line ``matches``, and everything under them."""
    table = [line.split(None, 2) for line in subprocess.run(["ps", "-eww", "-o", "pid,ppid,args"], capture_output=True,
                                                            text=True).stdout.splitlines()[1:]]
    roots = [int(pid) for pid, _, *args in table if args and matches(args[0])]
    found, frontier = list(roots), list(roots)
    while frontier:
        children = [int(pid) for pid, ppid, *_ in table if int(ppid) in frontier]
        found, frontier = found + children, children
    return found


def python_layer(target: Path) -> Path:
    """A Python environment at ``target`` that sees this one's packages (a .pth file) and has its commands (``ray``,
    ...), but installs into itself: what a machine's ``pip install -e`` changes stays on that machine."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(target)}))
    site.joinpath("layer.pth").write_text(sysconfig.get_path("purelib") + "\n")
    here = Path(sys.executable).parent
    for script in here.iterdir():
        if script.is_file() and not script.name.startswith(("python", "activate", "Activate")):
            lines = script.read_bytes().split(b"\n", 1)
            if len(lines) == 2 and lines[0] == f"#!{here / 'python'}".encode():
                command = target / "bin" / script.name
                command.write_bytes(f"#!{target / 'bin' / 'python'}\n".encode() + lines[1])
                command.chmod(0o755)
    return target / "bin"


def machine_ips(count: int) -> list[str]:
    """The machines' addresses: 10.77.0.2, .3, ... (.1 is the launching side's)."""
    return [f"{SUBNET}.{n}" for n in range(2, 2 + count)]


def write_passwd(path: Path, home: Path) -> None:
    """A copy of /etc/passwd where this user's home is ``home``."""
    uid = str(os.getuid())
    lines = [line.split(":") for line in Path("/etc/passwd").read_text().splitlines()]
    path.write_text("".join(":".join(f[:5] + [str(home)] + f[6:] if f[2] == uid else f) + "\n" for f in lines))


class Machines:
    """``count`` machines at 10.77.0.2, .3, ... reachable by SSH as this user with ``key``; commands of the launching
    side run through :meth:`run` and :meth:`start`. A context manager: everything ends on leaving it."""

    def __init__(self, root: Path, count: int):
        self.root, self.count = root, count
        self.ips = machine_ips(count)
        self.key = root / "keys" / "user"
        self.launcher_home = root / "launcher"
        self.init: subprocess.Popen | None = None  # unshare, the namespace's first process's parent
        self.first = 0  # the namespace's first process (its pid 1), whose namespaces commands enter

    def __enter__(self) -> Machines:
        keys = self.root / "keys"
        keys.mkdir(parents=True)
        for name in ("host", "user"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(keys / name)],
                           check=True)
        shutil.copy(keys / "user.pub", keys / "authorized_keys")
        (self.root / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (self.launcher_home / "tmp").mkdir(parents=True)
        write_passwd(self.root / "launcher.passwd", self.launcher_home)
        for ip in self.ips:
            machine = self.machine_dir(ip)
            (machine / "tmp").mkdir(parents=True)
            (machine / "home" / ".config" / "pip").mkdir(parents=True)
            (machine / "home" / ".config" / "pip" / "pip.conf").write_text(PIP_CONF)
            bin_dir = python_layer(machine / "python")
            (machine / "home" / ".bashrc").write_text(f'export PATH="{bin_dir}:$PATH"\n')
            write_passwd(machine / "passwd", machine / "home")
            (machine / "sshd_config").write_text(SSHD_CONFIG.format(ip=ip, root=self.root, machine=machine))
        self.init = subprocess.Popen([*NAMESPACES, sys.executable, __file__, str(self.root), str(self.count)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "lan.log", "w"))
        deadline = time.monotonic() + 30
        while not (self.root / "ready").exists():
            if self.init.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the machines did not come up: " + (self.root / "lan.log").read_text()[-2000:])
            time.sleep(0.05)
        self.first = int(Path(f"/proc/{self.init.pid}/task/{self.init.pid}/children").read_text().split()[0])
        return self

    def machine_dir(self, ip: str) -> Path:
        return self.root / ip.rsplit(".", 1)[1]

    def env(self) -> dict[str, str]:
        """The launching side's environment: its own home (its ~/.ray/auth_token) and temporary directory (Ray's
        local cluster state), this Python's commands on the path."""
        return {"HOME": str(self.launcher_home), "TMPDIR": str(self.launcher_home / "tmp"), "LANG": "C.UTF-8",
                "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}

    def command(self, line: str, cwd: Path) -> list[str]:
        return ["nsenter", f"--target={self.first}", "--net", "--mount", "--pid", "--", "bash", "-c",
                f"cd {cwd} && {line}"]

    def run(self, line: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        """Run a shell line on the launching side and wait for it."""
        return subprocess.run(self.command(line, cwd), env=self.env(), capture_output=True, text=True,
                              timeout=timeout)

    def start(self, line: str, cwd: Path, log: Path) -> subprocess.Popen:
        """Start a shell line on the launching side, its output to ``log``."""
        return subprocess.Popen(self.command(line, cwd), env=self.env(), stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)

    def processes(self) -> list[int]:
        """Every process of these machines still alive: the namespaces' and all under them."""
        return process_tree(lambda args: str(self.root) in args)

    def __exit__(self, *exc) -> None:
        if self.init is not None and self.init.poll() is None:
            self.init.kill()  # and with it (--kill-child) the namespace's first process and all in the namespace
            self.init.wait(timeout=30)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)


def lan(root: Path, count: int) -> None:
    """The namespace's first process: the bridge, then the machines on it, then reaping until killed."""
    def sh(line: str) -> None:
        subprocess.run(["sh", "-c", line], check=True)

    sh(f"mount --bind {root}/launcher.passwd /etc/passwd")
    sh(f"ip link set lo up && ip link add br0 type bridge && ip addr add {LAUNCHER_IP}/24 dev br0 && "
       "ip link set br0 up")
    ips = machine_ips(count)
    for ip in ips:
        number = ip.rsplit(".", 1)[1]
        link = f"m{number}"
        machine = subprocess.Popen([*NAMESPACES, "sh", "-c", MACHINE.format(
            link=link, ip=ip, gateway=LAUNCHER_IP, root=root, machine=root / number, sshd=TOOLS["sshd"])])
        sh(f"ip link add {link} type veth peer name {link}b && ip link set {link}b master br0 && "
           f"ip link set {link}b up && ip link set {link} netns {machine.pid}")
    for ip in ips:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection((ip, 22), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    (root / "ready").touch()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(1)


if __name__ == "__main__":
    lan(Path(sys.argv[1]), int(sys.argv[2]))
