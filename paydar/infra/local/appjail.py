"""Where an agency's process runs: its own uid, its own mounts, nothing of Paydar's.

An agency app is not Paydar's code, and a compromised one is compromised totally. Started
beside Paydar's components as the same user, it could read every key in the state
directory, sign routing tables, stop any program through supervisord and signal every
process. So ``paydar up`` starts each instance command through this launcher, as root:

1. a private mount namespace (``unshare``), with every mount private to it;
2. a fresh tmpfs over the state directory (its keys, tokens and supervisord's socket are
   not even visible), and over ``/tmp``, ``/var/tmp`` and ``/dev/shm`` (nothing shared with
   other instances);
3. the directories it needs bound where any user can reach them (an app's: the topology
   file's, read-only at ``/tmp/app``, made the working directory; a database server's: its
   binaries read-only, its data directory writable), so a checkout under a private home still runs;
4. a name for that uid in the namespace's ``/etc/passwd`` and ``/etc/group``, and its own
   uid and gid (``APP_UID_BASE`` + its index: no other process has it, so
   it can signal or trace nothing of Paydar's or of another instance), no supplementary
   groups, ``no_new_privs``, a clean environment (``PATH`` of the system only), then ``exec``:
   the process supervisord watches *is* the app, so stopping, freezing and killing it act on it;
5. a private IPC namespace, limits of its own (processes, descriptors, no core files), the
   kernel's first pick when memory runs out, and inode caps on its tmpfs; and before anything,
   every process its uid left behind from an earlier run is killed.

The standard library has no ``unshare`` or ``mount`` before Python 3.12, so they are called
through ``ctypes`` (util-linux's ``unshare`` would need a shell between it and the app).

Run: ``python -m paydar.infra.local.appjail --hide STATE --bind SRC=DST [--bind-rw SRC=DST] --cwd DST
--uid N -- ARGV...``
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import resource
import signal
import sys
import sysconfig
import time
from pathlib import Path

__all__ = ["APP_UID_BASE", "JAIL_APP_DIR", "jailed_command", "main", "python_in_jail"]

APP_UID_BASE = 810_000
"""Instance n runs as uid and gid ``APP_UID_BASE + n``: far from any account a system creates."""
JAIL_APP_DIR = "/tmp/app"
JAIL_PYTHON = "/tmp/python"
JAIL_PACKAGES = "/tmp/python-packages"
CLONE_NEWNS, CLONE_NEWIPC = 0x00020000, 0x08000000
LIMITS = {"RLIMIT_NPROC": 512, "RLIMIT_NOFILE": 4096, "RLIMIT_CORE": 0}
"""Per jailed uid (each has its own): enough for a web app or a database, never the host's processes or descriptors."""
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def jailed_command(python: str, *, state_dir: Path, uid: int, argv: list[str], cwd: str = JAIL_APP_DIR,
                   binds: dict[Path, str] | None = None, writable: dict[Path, str] | None = None,
                   env: dict[str, str] | None = None, pass_env: tuple[str, ...] = (),
                   die_with_parent: bool = False) -> list[str]:
    """The supervised command that runs ``argv`` jailed as described above: ``binds`` (source ->
    where the process sees it) read-only, ``writable`` read-write, ``cwd`` its working directory,
    ``env`` set (never a secret: a command line is readable by every process) and ``pass_env``
    copied from the launcher's own environment (how a secret reaches it). ``die_with_parent``:
    the process is killed when the one that started it dies (a database server with its agent)."""
    args = [python, "-m", "paydar.infra.local.appjail", "--hide", str(state_dir), "--uid", str(uid), "--cwd", cwd]
    args += [arg for source, target in (binds or {}).items() for arg in ("--bind", f"{source}={target}")]
    args += [arg for source, target in (writable or {}).items() for arg in ("--bind-rw", f"{source}={target}")]
    args += [arg for name, value in (env or {}).items() for arg in ("--env", f"{name}={value}")]
    args += [arg for name in pass_env for arg in ("--pass-env", name)]
    return [*args, *(["--die-with-parent"] if die_with_parent else []), "--", *argv]


def python_in_jail() -> tuple[str, dict[Path, str], dict[str, str]]:
    """Paydar's own interpreter and installed packages as a jailed process reaches them (the
    ``{python}`` of an instance command): the interpreter, the binds that make it reachable from
    anywhere (its home may be private), and the environment that finds its library and packages."""
    home = Path(sys.base_prefix)
    packages = Path(sysconfig.get_paths()["purelib"])
    name = Path(sys.executable).resolve().name
    return (f"{JAIL_PYTHON}/bin/{name}", {home: JAIL_PYTHON, packages: JAIL_PACKAGES},
            {"PYTHONPATH": JAIL_PACKAGES, "LD_LIBRARY_PATH": f"{JAIL_PYTHON}/lib"})


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SystemExit(f"appjail: {what} failed: {os.strerror(errno)}; an agency app runs jailed, which needs "
                         "root and a kernel that allows mount namespaces")


def _mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return text.encode() if text is not None else None

    _check(libc.mount(encode(source), target.encode(), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def enter(state_dir: Path, uid: int, cwd: str, binds: list[tuple[Path, str, bool]]) -> None:
    """Become the jailed process: mounts, then its own uid; raise SystemExit on failure.
    ``binds`` are (source, target, writable)."""
    for source, _, rw in binds:
        if rw and os.stat(source).st_uid != uid:
            raise SystemExit(f"appjail: {source} is to be written by uid {uid}, but another owns it")
        if not rw and os.stat(source).st_mode & 0o005 != 0o005:
            raise SystemExit(f"appjail: {source} is not readable by other users, and the process runs as one: "
                             f"make it so (chmod o+rx {source}), or keep it in a directory that is")
    libc = _libc()
    _end_leftovers(uid)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC), "unshare (private mount and IPC namespaces)")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    # Held open: a source may lie under the state directory or /tmp, which the next mounts cover.
    held = [(os.open(source, os.O_PATH | os.O_DIRECTORY), target, rw) for source, target, rw in binds]
    _mount(libc, "tmpfs", str(state_dir), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=16,mode=000")
    for private in PRIVATE_DIRS:
        if Path(private).is_dir():
            _mount(libc, "tmpfs", private, "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,nr_inodes=16384,mode=1777")
    for fd, target, rw in held:
        Path(target).mkdir(mode=0o755, parents=True, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        if not rw:  # read-only: it cannot change its own code
            _mount(libc, None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)
    _name_the_uid(libc, uid)
    os.chdir(cwd)
    Path("/proc/self/oom_score_adj").write_text("1000")  # out of memory, the kernel ends this first, not Paydar
    for name, value in LIMITS.items():
        limit = getattr(resource, name)
        resource.setrlimit(limit, (value, value))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)  # from root to another uid: the kernel drops every capability
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


LEFTOVER_SECONDS = 5.0


def _end_leftovers(uid: int) -> None:
    """Kill every process of ``uid`` still alive from an earlier run (one that left its process
    group behind): the uid is this instance's alone, so nothing else is touched."""
    child = os.fork()
    if child == 0:  # the child becomes the uid, whose kill(-1) reaches exactly that uid's processes
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(child, 0)
    # SIGKILL is delivered, not yet done: wait (bounded) until none of them runs any more, so a
    # database server's orphaned backends are gone before a new server takes its data directory.
    deadline = time.monotonic() + LEFTOVER_SECONDS
    while _running_as(uid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _running_as(uid: int) -> bool:
    """Whether any process of ``uid`` is alive (zombies, which run nothing, aside)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z"):
            return True
    return False


def _name_the_uid(libc: ctypes.CDLL, uid: int) -> None:
    """Give the uid a name in this namespace's /etc/passwd and /etc/group: programs such as
    PostgreSQL's refuse to run as a uid no account names."""
    for path, line in (("/etc/passwd", f"paydar-jailed:x:{uid}:{uid}:jailed by paydar:/tmp:/usr/sbin/nologin"),
                       ("/etc/group", f"paydar-jailed:x:{uid}:")):
        private = Path(f"/tmp/.jail{path.replace('/', '-')}")
        private.write_text(Path(path).read_text() + line + "\n")
        private.chmod(0o644)
        _mount(libc, str(private), path, None, MS_BIND)


def _variable(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=VALUE")
    return name, value


def _bind(text: str) -> tuple[Path, str]:
    source, sep, target = text.partition("=")
    if not sep or not target.startswith("/tmp/"):
        raise argparse.ArgumentTypeError(f"{text!r}: give SOURCE=/tmp/<name> (binds land in the private /tmp)")
    return Path(source), target


def main() -> None:
    parser = argparse.ArgumentParser(description="Run an agency's process jailed (see the module doc).")
    parser.add_argument("--hide", type=Path, required=True, help="the state directory, hidden from the process")
    parser.add_argument("--bind", type=_bind, action="append", default=[], help="SOURCE=/tmp/NAME, read-only")
    parser.add_argument("--bind-rw", type=_bind, action="append", default=[], help="SOURCE=/tmp/NAME, writable")
    parser.add_argument("--cwd", default=JAIL_APP_DIR, help="the working directory, as the process sees it")
    parser.add_argument("--uid", type=int, required=True, help="the process's own uid and gid")
    parser.add_argument("--env", type=_variable, action="append", default=[], help="NAME=VALUE to set (no secrets)")
    parser.add_argument("--pass-env", action="append", default=[], help="NAME to copy from this environment")
    parser.add_argument("--die-with-parent", action="store_true", help="killed when its starter dies")
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command")
    parent = os.getppid()
    args = parser.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        parser.error("no command after --")
    if args.uid < APP_UID_BASE:
        parser.error(f"--uid must be at least {APP_UID_BASE}: an account of this system must never run it")
    binds = [(source, target, False) for source, target in args.bind]
    enter(args.hide, args.uid, args.cwd, binds + [(source, target, True) for source, target in args.bind_rw])
    environment = {"PATH": SYSTEM_PATH, "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    environment |= dict(args.env) | {name: os.environ[name] for name in args.pass_env if name in os.environ}
    if args.die_with_parent:
        # Set after the uid change (which clears it), and checked: the parent may be gone already.
        _check(_libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "parent-death signal")
        if os.getppid() != parent:
            sys.exit("appjail: the process that started it has gone; not starting")
    try:
        os.execvpe(argv[0], argv, environment)
    except OSError as exc:
        sys.exit(f"appjail: cannot run {argv[0]!r} as uid {args.uid}: {exc.strerror}; the command must be on "
                 f"{SYSTEM_PATH} or inside the topology file's directory, and readable by any user")


if __name__ == "__main__":
    main()
