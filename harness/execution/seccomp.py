"""One list of system calls a training run never needs, as a Docker seccomp profile and as the
classic-BPF filter bubblewrap loads.

Both deny, with EPERM, the calls Docker's default profile denies (kernel modules, keyrings,
mounts and namespaces, clock setting, reboot, kexec, bpf, perf, userfaultfd, ...) and also
`ptrace` and `process_vm_*` (a run stopping or reading its sandbox's PID 1, the deadline's
backstop) and `io_uring_*` (a second syscall surface that seccomp cannot see into). `clone`
with a namespace flag is denied and `clone3` answers ENOSYS, so that C libraries fall back to
`clone`, whose flags a filter can read. Everything else is allowed: on top of dropped
capabilities and no_new_privs, this is a deny list, not an allow list.
"""

from __future__ import annotations

import json
import platform
import struct
from typing import Any

EPERM = 1
ENOSYS = 38

DENIED = (
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "umount2",
    "unshare",
    "userfaultfd",
)

#: The namespace flags of clone(2): a run makes no namespaces of its own.
CLONE_NAMESPACES = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
NAMESPACE_MASK = sum(CLONE_NAMESPACES.values())


def docker_profile() -> dict[str, Any]:
    """The profile for `--security-opt seccomp=<json>` (the engine resolves names per arch)."""
    rules: list[dict[str, Any]] = [
        {"names": list(DENIED), "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
    ]
    for flag in CLONE_NAMESPACES.values():
        rules.append(
            {
                "names": ["clone"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
            }
        )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": rules,
    }


def docker_security_opt() -> str:
    return "seccomp=" + json.dumps(docker_profile(), separators=(",", ":"))


# ---- classic BPF for bubblewrap's --seccomp -------------------------------------------------

#: Numbers of the denied calls, and of clone/clone3, per architecture (from the kernel's tables).
SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "acct": 163,
        "add_key": 248,
        "bpf": 321,
        "clock_adjtime": 305,
        "clock_settime": 227,
        "delete_module": 176,
        "finit_module": 313,
        "init_module": 175,
        "kexec_file_load": 320,
        "kexec_load": 246,
        "keyctl": 250,
        "lookup_dcookie": 212,
        "mount": 165,
        "name_to_handle_at": 303,
        "open_by_handle_at": 304,
        "perf_event_open": 298,
        "pivot_root": 155,
        "process_vm_readv": 310,
        "process_vm_writev": 311,
        "ptrace": 101,
        "quotactl": 179,
        "reboot": 169,
        "request_key": 249,
        "setns": 308,
        "settimeofday": 164,
        "swapoff": 168,
        "swapon": 167,
        "umount2": 166,
        "unshare": 272,
        "userfaultfd": 323,
        "clone": 56,
    },
    "aarch64": {
        "acct": 89,
        "add_key": 217,
        "bpf": 280,
        "clock_adjtime": 266,
        "clock_settime": 112,
        "delete_module": 106,
        "finit_module": 273,
        "init_module": 105,
        "kexec_file_load": 294,
        "kexec_load": 104,
        "keyctl": 219,
        "lookup_dcookie": 18,
        "mount": 40,
        "name_to_handle_at": 264,
        "open_by_handle_at": 265,
        "perf_event_open": 241,
        "pivot_root": 41,
        "process_vm_readv": 270,
        "process_vm_writev": 271,
        "ptrace": 117,
        "quotactl": 60,
        "reboot": 142,
        "request_key": 218,
        "setns": 268,
        "settimeofday": 170,
        "swapoff": 225,
        "swapon": 224,
        "umount2": 39,
        "unshare": 97,
        "userfaultfd": 282,
        "clone": 220,
    },
}
#: Numbered alike on every architecture (the shared table, from Linux 5.1 on).
COMMON = {
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
    "open_tree": 428,
    "move_mount": 429,
    "fsopen": 430,
    "fsconfig": 431,
    "fsmount": 432,
    "fspick": 433,
    "clone3": 435,
    "mount_setattr": 442,
}
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_BIT = 0x40000000

_LD_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_ERRNO = 0x00050000
# Offsets in struct seccomp_data.
_NR, _ARCH, _ARG0 = 0, 4, 16


def bpf_program(machine: str | None = None) -> bytes | None:
    """The filter as bwrap's `--seccomp` reads it (sock_filter records), or None on an
    architecture this table does not know (the sandbox then runs without one)."""
    arch = machine or platform.machine()
    if arch not in SYSCALLS:
        return None
    numbers = {**SYSCALLS[arch], **COMMON}
    denied = sorted({numbers[name] for name in DENIED if name in numbers})
    prog: list[tuple[int, int, int, int]] = []
    # Another ABI in the same process (i386 through int 0x80): denied whole.
    prog.append((_LD_ABS, 0, 0, _ARCH))
    prog.append((_JEQ, 1, 0, AUDIT_ARCH[arch]))
    prog.append((_RET, 0, 0, _ERRNO | EPERM))
    prog.append((_LD_ABS, 0, 0, _NR))
    if arch == "x86_64":
        prog.append((_JGE, 0, 1, X32_BIT))  # the x32 ABI's numbers
        prog.append((_RET, 0, 0, _ERRNO | EPERM))
    # Each denied number jumps to the EPERM return at the end.
    tail = 5  # clone check (4 instructions) + allow, before the EPERM and ENOSYS returns
    for i, nr in enumerate(denied):
        left = len(denied) - i - 1
        prog.append((_JEQ, left + tail + 1, 0, nr))
    prog.append((_JEQ, 0, 1, numbers["clone3"]))
    prog.append((_RET, 0, 0, _ERRNO | ENOSYS))
    # clone with a namespace flag: the low 32 bits of its first argument (little-endian).
    prog.append((_JEQ, 0, 2, numbers["clone"]))
    prog.append((_LD_ABS, 0, 0, _ARG0))
    prog.append((_JSET, 1, 0, NAMESPACE_MASK))
    prog.append((_RET, 0, 0, _ALLOW))
    prog.append((_RET, 0, 0, _ERRNO | EPERM))
    return b"".join(struct.pack("<HBBI", *ins) for ins in prog)
